"""Loading an encoding (enrich/tokenizer.py): on first use only, once, offline, and without the
rank table tiktoken would keep for pickling (~26 MiB for o200k_base). The rank file is read by
the sidecar, not by tiktoken's loader; the encoding built from it must be tiktoken's own in
every respect: the same rank table, pattern and special tokens, and the same tokens for any
text."""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import shutil
import tracemalloc
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
from tiktoken_ext import openai_public

from sidecar.enrich import tokenizer as tk

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Texts that exercise every branch of both patterns: letters of many scripts with marks, case
# changes and contractions, digit runs, punctuation runs with line breaks and slashes, whitespace
# runs of every kind (trailing, before words, mixed \r\n), text that looks like special tokens,
# emoji and joiners, lone surrogates (tiktoken re-encodes those), control characters, long runs.
TEXTS = [
    "",
    "Hello world!",
    "I'm sure they'll say we've done it; it's HIS DOG'S 'BONE' and You'RE late.",
    "café naïve résumé Ångström œuvre ﬁnance",
    "世界你好\uff0c今天天气很好。日本語のテキスト、カタカナ、ひらがな。한국어 문장입니다.",
    "Привет, мир! Ελληνικά κείμενα. עברית מימין לשמאל. العربية مع التشكيل: مَرْحَبًا",
    "हिन्दी पाठ, தமிழ், ไทยภาษา, ქართული, Tiếng Việt có dấu",
    "e\u0301\u0302 a\u0308\u0323 combining marks, Z\u0351\u0352a\u0353l\u0354g\u0355o\u0356",
    "0 1 12 123 1234 12345 3.14159 1e999 2**70=1180591620717411303424 -0.0 ١٢٣ ४५६ ⅫⅣ",
    "   leading spaces",
    "trailing spaces   ",
    "\t\ttabs\tand\t\ttabs\t",
    "\n\n\nnewlines\n\n\n",
    "\r\n\r\nwindows\r\nline\rendings\r\n",
    " \n \n\t \r\n  \u00a0\u2003\u3000 unicode spaces\u2028\u2029",
    " " * 1000,
    "\n" * 500,
    " \t\n" * 300,
    "a" * 5000,
    "ab " * 2000,
    "!!!???...;;;:::---___===+++***///\\\\\\|||@@@###$$$%%%^^^&&&",
    "path/to/file.py // comment /* block */ <tag attr='x'>text</tag> https://example.com/a?b=c&d=e",
    "def f(x: int) -> list[int]:\n    return [x ** 2 for x in range(10)]  # squares\n",
    '{"key": "value", "n": [1, 2.5, null, true], "nested": {"a": "\\u00e9\\ud83d\\ude00"}}',
    "<|endoftext|> <|endofprompt|> <|fim_prefix|><|fim_middle|><|fim_suffix|> <|im_start|>",
    "<|endoftext|>",
    "text<|endoftext|>more<|endofprompt|>",
    "<|reserved_200000|> <|startoftext|> <|channel|>",
    "😀😃😄 👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇫🇷🇯🇵 ❤️‍🔥",
    "\x00\x01\x02\x7f\x1b[31mred\x1b[0m \ufeffBOM \ufffd replacement",
    "lone \ud800 surrogate \udfff here",
    "\U0001f600" * 50 + "\U00010348\U0001d11e",
    "".join(chr(ord(c) + 0xFEE0) if c != " " else "\u3000" for c in "FULLWIDTH text 123"),
]


def corpus() -> Iterator[str]:
    yield from TEXTS
    for path in sorted((FIXTURES / "recorded").iterdir()):
        yield path.read_bytes().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tiktoken.Encoding]]:
    """tiktoken's own encodings (`tiktoken.get_encoding`), from a copy of the bundled files
    through its cache folder, its downloader refusing URLs."""
    folder = tmp_path_factory.mktemp("tiktoken-cache")
    for _, (filename, _) in tk._ENCODING_FILES.items():
        shutil.copy(tk.BUNDLED_DIR / filename, folder / filename)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(folder))

        def offline(blobpath: str) -> bytes:
            raise AssertionError(f"tiktoken tried to download {blobpath}")

        mp.setattr(tiktoken.load, "read_file", offline)
        yield {name: tiktoken.get_encoding(name) for name in tk.ENCODINGS}


@pytest.mark.parametrize("name", tk.ENCODINGS)
def test_the_rank_table_is_tiktokens(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tk.BUNDLED_DIR / tk._ENCODING_FILES[name][0]
    ours = tk._read_ranks(path, tk._ENCODING_FILES[name][1])
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken reads the path itself, no cache
    theirs = tiktoken.load.load_tiktoken_bpe(str(path))
    assert ours == theirs
    assert list(ours.items()) == list(theirs.items())  # the same order too
    assert all(type(k) is bytes and type(v) is int for k, v in ours.items())


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (b"IQ== 0\nIg== 1\nIw== 2\n", None),
        (b"IQ== 0\nIg== 1\nIw== 3\n", "line numbers"),  # a gap: ranks are not positions
        (b"IQ== 1\nIg== 2\nIw== 2\n", "line numbers"),
        (b"IQ== 0\nIg== 1\nIw== x\n", "invalid literal"),
    ],
)
def test_rank_files_that_are_not_counted_lines_are_refused(
    text: bytes, error: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "ranks"
    path.write_bytes(text)
    sha256 = hashlib.sha256(text).hexdigest()
    with pytest.raises(ValueError, match="expected SHA-256"):
        tk._read_ranks(path, hashlib.sha256(text + b"x").hexdigest())
    if error is None:
        assert tk._read_ranks(path, sha256) == {b"!": 0, b'"': 1, b"#": 2}
    else:
        with pytest.raises(ValueError, match=error):
            tk._read_ranks(path, sha256)


@pytest.mark.parametrize("name", tk.ENCODINGS)
def test_the_encoding_is_tiktokens(
    name: str, reference: dict[str, tiktoken.Encoding], tmp_path: Path
) -> None:
    ref = reference[name]
    folder = tmp_path / "enc"
    shutil.copytree(tk.BUNDLED_DIR, folder)
    enc = tk.get_encoder(name, str(folder))
    assert enc is not None and enc is not ref
    assert enc.name == ref.name == name
    assert enc.n_vocab == ref.n_vocab and enc.max_token_value == ref.max_token_value
    assert enc._pat_str == ref._pat_str
    assert enc._special_tokens == ref._special_tokens and enc.special_tokens_set
    assert enc.eot_token == ref.eot_token
    # every token's bytes, through the Rust tables (rank -> bytes; a gap raises in both)
    for rank in range(ref.n_vocab):
        try:
            want: bytes | type[KeyError] = ref.decode_single_token_bytes(rank)
        except KeyError:
            want = KeyError
        try:
            got: bytes | type[KeyError] = enc.decode_single_token_bytes(rank)
        except KeyError:
            got = KeyError
        assert got == want, rank
    for text in corpus():
        tokens = ref.encode_ordinary(text)
        assert enc.encode_ordinary(text) == tokens, text[:80]
        assert enc.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
        assert tk.count(enc, text) == len(tokens)
    # bytes -> token (the encoder's table): each token's bytes alone encode to that one token
    for token in ref._mergeable_ranks:
        assert enc.encode_single_token(token) == ref.encode_single_token(token)


def test_loaded_on_first_use_without_the_rank_table(tmp_path: Path) -> None:
    folder = tmp_path / "enc"  # a folder of its own: the process-wide cache starts empty for it
    shutil.copytree(tk.BUNDLED_DIR, folder)
    assert not tk.is_loaded(tk.O200K, str(folder))
    assert not tk.is_loaded(tk.CL100K, str(folder))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        enc = tk.get_encoder(tk.O200K, str(folder))
        gc.collect()
        held, peak = (n - before for n in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert enc is not None
    # the Python rank table (~26 MiB) was built, and freed once the Rust core had copied it
    assert 20 * 2**20 < peak < 40 * 2**20 and held < 2**20
    assert tk.is_loaded(tk.O200K, str(folder)) and not tk.is_loaded(tk.CL100K, str(folder))
    assert tk.get_encoder(tk.O200K, str(folder)) is enc  # once per process
    assert enc._mergeable_ranks == {}  # only pickling used it
    assert tk.count(enc, "Hello world!") == 3 and enc.decode(enc.encode("café 世界")) == "café 世界"


def test_unusable_files_count_as_loaded_with_the_heuristic(tmp_path: Path) -> None:
    assert not tk.is_loaded(tk.CL100K, str(tmp_path))
    assert tk.get_encoder(tk.CL100K, str(tmp_path)) is None  # missing file: heuristic
    assert tk.is_loaded(tk.CL100K, str(tmp_path))  # answered at once from now on


def test_tiktokens_loaders_and_environment_are_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("tiktoken's own loader was used")

    for fn in ("read_file", "read_file_cached", "load_tiktoken_bpe"):
        monkeypatch.setattr(tiktoken.load, fn, refuse)
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "elsewhere"))
    folder = tmp_path / "enc"
    shutil.copytree(tk.BUNDLED_DIR, folder)
    for name in tk.ENCODINGS:
        enc = tk.get_encoder(name, str(folder))
        assert enc is not None and tk.count(enc, "Hello world!") == 3
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def asks_for_another_file() -> dict:
    return {"mergeable_ranks": load_tiktoken_bpe("https://example.com/x.tiktoken", "00")}  # noqa: F821


def asks_for_the_gpt2_files() -> dict:
    return {"mergeable_ranks": data_gym_to_mergeable_bpe_ranks("https://example.com/v.bpe")}  # noqa: F821


def calls_another_constructor() -> dict:
    # run in tiktoken's module (below): its own o200k_base, its own loader, cache and network
    return o200k_base()  # noqa: F821


def in_tiktokens_module(fn: Callable[[], dict]) -> Callable[[], dict]:
    """`fn` as if written in tiktoken_ext.openai_public (with that module's globals)."""
    return types.FunctionType(fn.__code__, vars(openai_public), fn.__name__)


def reads_no_file() -> dict:
    return {"name": "o200k_base", "pat_str": " ", "mergeable_ranks": {}, "special_tokens": {}}


@pytest.mark.parametrize(
    ("constructor", "why"),
    [
        (asks_for_another_file, "is not the bundled file"),
        (asks_for_the_gpt2_files, "download refused"),
        (in_tiktokens_module(calls_another_constructor), "o200k_base"),
        (reads_no_file, "did not take the bundled ranks"),
    ],
)
def test_a_constructor_that_wants_other_files_gets_the_heuristic(
    constructor, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """Should tiktoken's constructor for an encoding change (another file, another loader), the
    load fails, the network untouched, and counting falls back with one warning."""
    monkeypatch.setitem(openai_public.ENCODING_CONSTRUCTORS, tk.O200K, constructor)
    reads: list[object] = []  # tiktoken's own file access, which must never run
    for fn in ("read_file", "read_file_cached"):
        monkeypatch.setattr(tiktoken.load, fn, lambda *a, **k: reads.append(a) or b"")
    folder = tmp_path / "enc"
    shutil.copytree(tk.BUNDLED_DIR, folder)
    with caplog.at_level(logging.WARNING, logger="sidecar.tokens"):
        assert tk.get_encoder(tk.O200K, str(folder)) is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "sidecar.tokens"]
    assert len(warnings) == 1 and why in warnings[0]
    assert reads == []

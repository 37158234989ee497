"""Text to tokens, offline: the tiktoken encodings, which one a model uses, what text is counted.

This is the only module that imports tiktoken; `sidecar.enrich.tokens` (the estimator and its
calibration) counts through it.

Encodings
    o200k_base for the gpt-4o / 4.1 / 4.5 / 5 / o-series / gpt-oss families, cl100k_base for
    gpt-4 / gpt-3.5 / embeddings; any other model (claude, gemini, llama ...) is counted with
    o200k_base as an approximation, which the estimator's calibration then corrects.

Offline loading
    The encodings ship with the package (`encodings/`, tiktoken cache files named by the SHA-1 of
    their download address); `tokens.encodings_dir` replaces that folder. This module reads the
    rank file itself, once its SHA-256 is the one tiktoken expects, and builds
    `tiktoken.Encoding` with tiktoken's own arguments for the encoding: its constructor in
    `tiktoken_ext.openai_public` runs with the rank loader it names swapped for ours, which
    accepts only the file whose address and hash the constructor gives. tiktoken's loader,
    downloader and cache folder (`TIKTOKEN_CACHE_DIR`) are never used, so a missing or corrupt
    file never reaches the network and is never deleted by tiktoken's "bad cache file" clean-up:
    counting falls back to ~4 characters per token with one warning. Encodings load lazily,
    once per process, each when first needed (o200k_base: ~0.3 CPU s, +47 MiB for good and
    ~71 MiB at the peak of the load; cl100k_base about half). The rank file is decoded with no
    Python step per line, in blocks between which the event loop's thread can take the GIL
    (tiktoken's `load_tiktoken_bpe` calls `base64.b64decode` per line on a list of the lines:
    ~1/2 more instructions for the whole load, ~7 MiB more at its peak); tiktoken's Rust
    constructor then holds the GIL for its whole run (~0.15-0.3 s). The rank table tiktoken
    keeps only for pickling is dropped once the Rust core has its copy.

What a request bills as input is rendered by `sidecar.enrich.input_tokens`; only counts leave
this module.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import io
import itertools
import logging
import math
import re
import types
from collections.abc import Iterable
from operator import itemgetter
from pathlib import Path
from typing import NoReturn

import tiktoken
from tiktoken_ext import openai_public

from sidecar.types import TOKENS_ESTIMATED_HEURISTIC

log = logging.getLogger("sidecar.tokens")

Encoder = tiktoken.Encoding

O200K = "o200k_base"
CL100K = "cl100k_base"

BUNDLED_DIR = Path(__file__).resolve().parent / "encodings"

# tiktoken's cache file name (SHA-1 of the download address) and the SHA-256 it expects
# (tiktoken_ext/openai_public.py).
_ENCODING_FILES: dict[str, tuple[str, str]] = {
    O200K: (
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    CL100K: (
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}
ENCODINGS = tuple(_ENCODING_FILES)  # the encodings this module can load

CHARS_PER_TOKEN = 4  # heuristic fallback

# Encoder cache for the whole process: (resolved dir, encoding name) -> encoding, or None when the
# files there are unusable (heuristic). Directories already warned about.
_ENCODERS: dict[tuple[str, str], tiktoken.Encoding | None] = {}
_WARNED_DIRS: set[str] = set()


# --- model -> encoding ------------------------------------------------------------------------

_O200K_RE = re.compile(r"^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|chatgpt-4o|gpt-oss|o[1-9](?![0-9a-z]))")
_CL100K_RE = re.compile(
    r"^(gpt-4|gpt-3\.5|gpt-35|text-embedding-|davinci-002|babbage-002)"  # after the o200k test
)
# Families that reason in hidden tokens (an estimate from visible text is a lower bound). gpt-5's
# chat variants do not reason; Gemini 2.5+ thinks by default unless the budget is 0.
_REASONING_RE = re.compile(
    r"^(o[1-9](?![0-9a-z])|gpt-5(?!(\.\d+)?-chat)|gpt-oss|gemini-2\.5|gemini-3)"
)


def normalise_model(model: str | None) -> str:
    """Lower-case, drop provider prefixes (`openai/`, `azure/`, `openrouter/openai/`) and `ft:`."""
    if not model:
        return ""
    return _facts(model)[0]


def encoding_for(model: str | None) -> tuple[str, bool]:
    """(encoding name, exact): exact is False for a non-OpenAI model counted as an approximation."""
    if not model:
        return O200K, False
    return _facts(model)[1]


def is_reasoning_family(model: str | None) -> bool:
    return bool(model) and _facts(model)[2]  # type: ignore[arg-type]


# What the functions above say about a model name, worked out once per name: they are asked
# several times for every request. Bounded: names up to 256 characters, 1,024 of them (then
# started afresh); a longer (hostile) name is worked out each time.
_FACTS: dict[str, tuple[str, tuple[str, bool], bool]] = {}
_FACTS_MAX = 1024
_FACTS_NAME_CHARS = 256


def _facts(model: str) -> tuple[str, tuple[str, bool], bool]:
    facts = _FACTS.get(model)
    if facts is not None:
        return facts
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:]
    if _O200K_RE.match(name):
        encoding = (O200K, True)
    elif _CL100K_RE.match(name):
        encoding = (CL100K, True)
    else:
        encoding = (O200K, False)
    facts = (name, encoding, bool(_REASONING_RE.match(name)))
    if len(model) <= _FACTS_NAME_CHARS:
        if len(_FACTS) >= _FACTS_MAX:
            _FACTS.clear()
        _FACTS[model] = facts
    return facts


# --- loading ----------------------------------------------------------------------------------


_first = itemgetter(0)
_BLOCK_BYTES = 1 << 16  # ~3,600 lines, ~2 ms


def _read_ranks(path: Path, sha256: str) -> dict[bytes, int]:
    """The rank table of a tiktoken file (`<base64 token> <rank>` per line), as tiktoken's
    `load_tiktoken_bpe` reads it, once the file's SHA-256 is the expected one. The lines are
    taken 64 KiB at a time (no list of all of them), each split and decoded in C
    (`binascii.a2b_base64`, which `base64.b64decode` calls through two Python wrappers) with no
    Python step per line; the ranks of the bundled files are
    their line numbers (0, 1, ...), so they are counted rather than parsed, and the first and
    last lines checked. The SHA-256 fixes the content: a test compares the result with
    tiktoken's for both files."""
    data = path.read_bytes()  # OSError when missing
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path.name} does not have the expected SHA-256")
    lines, positions = io.BytesIO(data), itertools.count()
    ranks: dict[bytes, int] = {}
    # a block of lines at a time: between blocks the event loop's thread can take the GIL
    while block := lines.readlines(_BLOCK_BYTES):
        tokens = map(binascii.a2b_base64, map(_first, map(bytes.split, block)))
        ranks.update(zip(tokens, positions, strict=False))
    first_rank = data[data.find(b" ") + 1 : data.find(b"\n")]
    last_rank = data[data.rfind(b" ") + 1 :]  # int() ignores the line end
    if first_rank != b"0" or int(last_rank) != len(ranks) - 1:
        raise ValueError(f"{path.name}: the ranks are not its line numbers")
    return ranks


def _no_download(*args: object, **kwargs: object) -> NoReturn:
    raise OSError("tiktoken download refused: the sidecar loads encodings offline only")


def _load(directory: Path, name: str) -> tiktoken.Encoding:
    """Load one encoding from a folder of tiktoken cache files, never touching the network.

    The arguments of `tiktoken.Encoding` (pattern, special tokens) are tiktoken's own: its
    constructor for the encoding (`tiktoken_ext.openai_public`) is called with the rank loader
    it names swapped for `_read_ranks` of the file it asks for (a copy of the function with
    other globals: nothing shared is patched, loads may run in threads). The copy sees only
    tiktoken's plain values (strings, numbers) besides the two loaders: were a later tiktoken's
    constructor to call any other function (another constructor, a helper that reads files),
    it fails with NameError before any read, and counting falls back with one warning, rather
    than reaching tiktoken's own loader and the network."""
    filename, sha256 = _ENCODING_FILES[name]
    path = directory / filename
    given: list[dict[bytes, int]] = []

    def load_tiktoken_bpe(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        if hashlib.sha1(url.encode()).hexdigest() != filename or expected_hash != sha256:
            raise ValueError(f"tiktoken's {name} is not the bundled file {filename}")
        given.append(_read_ranks(path, sha256))
        return given[-1]

    constructor = openai_public.ENCODING_CONSTRUCTORS[name]
    if constructor.__closure__ is not None:  # a wrapped or nested function: not the plain one
        raise ValueError(f"tiktoken's {name} constructor is not a plain function")
    plain = {
        k: v
        for k, v in constructor.__globals__.items()
        if not callable(v) and not isinstance(v, types.ModuleType)
    }
    own = types.FunctionType(
        constructor.__code__,
        {
            **plain,
            "__builtins__": constructor.__globals__["__builtins__"],
            "load_tiktoken_bpe": load_tiktoken_bpe,
            "data_gym_to_mergeable_bpe_ranks": _no_download,
        },
        constructor.__name__,
        constructor.__defaults__,
        constructor.__closure__,
    )
    args = own()
    if len(given) != 1 or args.get("mergeable_ranks") is not given[0] or args["name"] != name:
        raise ValueError(f"tiktoken's {name} constructor did not take the bundled ranks")
    enc = tiktoken.Encoding(**args)
    # The Encoding keeps the rank table it was built from (a dict of 200,000 bytes objects for
    # o200k_base, ~26 MiB) only to be pickled; the counting code lives in its Rust core.
    if isinstance(getattr(enc, "_mergeable_ranks", None), dict):
        enc._mergeable_ranks = {}
    return enc


def _directory(encodings_dir: str | None) -> Path:
    return Path(encodings_dir).expanduser() if encodings_dir else BUNDLED_DIR


@functools.lru_cache(maxsize=64)  # one entry per configured folder, in practice one
def _resolved(encodings_dir: str | None) -> str:
    """The resolved folder of `encodings_dir`, worked out once per process (it is looked up for
    every count: resolving a path is several system calls)."""
    return str(_directory(encodings_dir).resolve())


def is_loaded(name: str, encodings_dir: str | None = None) -> bool:
    """Whether `get_encoder(name, encodings_dir)` answers at once (loaded, or known unusable).
    Loading takes 0.2-0.5 s: a caller on an event loop loads it in a thread first."""
    return (_resolved(encodings_dir), name) in _ENCODERS


def get_encoder(name: str, encodings_dir: str | None = None) -> tiktoken.Encoding | None:
    """The encoding, loaded once per process; None (heuristic) when its files are unusable."""
    key = (_resolved(encodings_dir), name)
    if key in _ENCODERS:
        return _ENCODERS[key]
    directory = _directory(encodings_dir)
    enc: tiktoken.Encoding | None
    try:
        enc = _load(directory, name)
        log.debug("token estimation: loaded %s from %s", name, directory)
    except Exception as exc:
        enc = None
        if key[0] not in _WARNED_DIRS:
            _WARNED_DIRS.add(key[0])
            log.warning(
                "token estimation: cannot load the tiktoken encoding %s from %s (%s); estimates "
                "fall back to ~%d characters per token (token_source=%s). Set "
                "tokens.encodings_dir to a folder holding the tiktoken cache files, or remove it "
                "to use the bundled ones",
                name,
                directory,
                exc,
                CHARS_PER_TOKEN,
                TOKENS_ESTIMATED_HEURISTIC,
            )
    _ENCODERS[key] = enc
    return enc


def encoder_states(directory: str) -> dict[str, str]:
    """Per encoding: `not_loaded`, `tiktoken`, or `heuristic` (its files were unusable)."""
    resolved = str(Path(directory).expanduser().resolve())
    states = {}
    for name in _ENCODING_FILES:
        key = (resolved, name)
        if key not in _ENCODERS:
            states[name] = "not_loaded"
        else:
            states[name] = "tiktoken" if _ENCODERS[key] is not None else "heuristic"
    return states


# Counts of short texts, per encoding name (the files are checked against tiktoken's SHA-256, so
# one name always counts the same): a stream's deltas are mostly a word each and repeat from
# stream to stream. Bounded: texts up to _MEMO_CHARS characters, at most _MEMO_SIZE of them per
# encoding (then started afresh), about 2 MB.
_MEMO_CHARS = 24
_MEMO_SIZE = 16_384
_COUNTS: dict[str, dict[str, int]] = {}


def count(enc: tiktoken.Encoding | None, text: str) -> int:
    """Tokens of a text; with no encoding (heuristic), ~4 characters per token."""
    if not text:
        return 0
    if enc is None:
        return math.ceil(len(text) / CHARS_PER_TOKEN)
    if len(text) > _MEMO_CHARS:
        return len(enc.encode_ordinary(text))  # special-token text counts as ordinary text
    memo = _COUNTS.get(enc.name)
    if memo is None:
        memo = _COUNTS[enc.name] = {}
    n = memo.get(text)
    if n is None:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        n = memo[text] = len(enc.encode_ordinary(text))
    return n


def count_all(enc: tiktoken.Encoding, texts: Iterable[str]) -> int:
    """`sum(count(enc, t) for t in texts)`, the memo read here directly: a stream's text is
    hundreds of deltas, most of them already counted."""
    memo = _COUNTS.get(enc.name)
    get = memo.get if memo is not None else {}.get
    total = 0
    for t in texts:
        n = get(t)
        total += count(enc, t) if n is None else n
    return total

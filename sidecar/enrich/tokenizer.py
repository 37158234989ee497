"""Text to tokens, offline: the tiktoken encodings, which one a model uses, what text is counted.

This is the only module that imports tiktoken; `sidecar.enrich.tokens` (the estimator and its
calibration) counts through it.

Encodings
    o200k_base for the gpt-4o / 4.1 / 4.5 / 5 / o-series / gpt-oss families, cl100k_base for
    gpt-4 / gpt-3.5 / embeddings; any other model (claude, gemini, llama ...) is counted with
    o200k_base as an approximation, which the estimator's calibration then corrects.

Offline loading
    The encodings ship with the package (`encodings/`, tiktoken cache files named by the SHA-1 of
    their download address); `tokens.encodings_dir` replaces that folder. Before handing a folder
    to tiktoken (through `TIKTOKEN_CACHE_DIR`, set only for the load) the file's SHA-256 is checked
    against the hash tiktoken expects, and for the duration of the load tiktoken's downloader is
    replaced by one that refuses URLs. A missing or corrupt file therefore never reaches the
    network, and never gets deleted by tiktoken's "bad cache file" clean-up: counting falls back
    to ~4 characters per token with one warning. Encodings load lazily, once per process.

Request bodies
    `request_texts` collects the text of a logged request (chat, Responses, Anthropic, Gemini,
    embeddings), grouped per message, with any literal token ids. Only counts leave this module.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import orjson
import tiktoken
import tiktoken.load

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
# OpenAI cookbook ("How to count tokens with tiktoken"): every message costs 3 tokens of framing
# and every reply is primed with 3 more. Other providers frame differently; this is approximate.
TOKENS_PER_MESSAGE = 3
TOKENS_REPLY_PRIMING = 3

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
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:]
    return name


def encoding_for(model: str | None) -> tuple[str, bool]:
    """(encoding name, exact): exact is False for a non-OpenAI model counted as an approximation."""
    name = normalise_model(model)
    if _O200K_RE.match(name):
        return O200K, True
    if _CL100K_RE.match(name):
        return CL100K, True
    return O200K, False


def is_reasoning_family(model: str | None) -> bool:
    return bool(_REASONING_RE.match(normalise_model(model)))


# --- loading ----------------------------------------------------------------------------------


def _refuse_urls(blobpath: str) -> bytes:
    if "://" in blobpath:
        raise OSError("tiktoken download refused: the sidecar loads encodings offline only")
    with open(blobpath, "rb") as f:
        return f.read()


def _load(directory: Path, name: str) -> tiktoken.Encoding:
    """Load one encoding from a folder of tiktoken cache files, never touching the network."""
    filename, sha256 = _ENCODING_FILES[name]
    data = (directory / filename).read_bytes()  # OSError when missing
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{filename} does not have the expected SHA-256 for {name}")
    saved_env = os.environ.get("TIKTOKEN_CACHE_DIR")
    saved_read = getattr(tiktoken.load, "read_file", None)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
    if saved_read is not None:
        tiktoken.load.read_file = _refuse_urls  # type: ignore[assignment]
    try:
        return tiktoken.get_encoding(name)
    finally:
        if saved_read is not None:
            tiktoken.load.read_file = saved_read  # type: ignore[assignment]
        if saved_env is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved_env


def get_encoder(name: str, encodings_dir: str | None = None) -> tiktoken.Encoding | None:
    """The encoding, loaded once per process; None (heuristic) when its files are unusable."""
    directory = Path(encodings_dir).expanduser() if encodings_dir else BUNDLED_DIR
    key = (str(directory.resolve()), name)
    if key in _ENCODERS:
        return _ENCODERS[key]
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


def count(enc: tiktoken.Encoding | None, text: str) -> int:
    """Tokens of a text; with no encoding (heuristic), ~4 characters per token."""
    if not text:
        return 0
    if enc is None:
        return math.ceil(len(text) / CHARS_PER_TOKEN)
    return len(enc.encode_ordinary(text))  # special-token text counts as ordinary text


# --- request bodies ---------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return ""


def _part_texts(content: Any, out: list[str]) -> None:
    """Text of a message's content: a string, or parts/blocks of the supported APIs."""
    if isinstance(content, str):
        out.append(content)
        return
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return
    for part in content:
        if isinstance(part, str):
            out.append(part)
            continue
        if not isinstance(part, dict):
            continue
        for key in ("text", "thinking", "refusal"):  # chat/Responses/Anthropic/Gemini text
            if isinstance(part.get(key), str):
                out.append(part[key])
        if part.get("type") == "tool_use":  # Anthropic
            out.append(str(part.get("name") or ""))
            out.append(_json_text(part.get("input")))
        if part.get("type") == "tool_result":
            _part_texts(part.get("content"), out)
        call = part.get("functionCall") or part.get("function_call")  # Gemini
        if isinstance(call, dict):
            out.append(str(call.get("name") or ""))
            out.append(_json_text(call.get("args")))
        resp = part.get("functionResponse") or part.get("function_response")
        if isinstance(resp, dict):
            out.append(_json_text(resp.get("response")))
        # Images, audio and files are not counted: the estimate is a text estimate.


def _message_texts(msg: Any, out: list[str]) -> None:
    if isinstance(msg, str):  # Responses / embeddings input given as a list of strings
        out.append(msg)
        return
    if not isinstance(msg, dict):
        return
    if isinstance(msg.get("role"), str):
        out.append(msg["role"])
    if isinstance(msg.get("name"), str):  # chat `name`, or a Responses function_call's
        out.append(msg["name"])
    _part_texts(msg.get("content"), out)
    _part_texts(msg.get("parts"), out)  # Gemini contents[]
    for call in msg.get("tool_calls") or []:  # chat assistant turns
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            out.append(str(fn.get("name") or ""))
            out.append(_json_text(fn.get("arguments")))
    if msg.get("type") == "function_call":  # Responses input items (name appended above)
        out.append(_json_text(msg.get("arguments")))
    if msg.get("type") == "function_call_output":
        out.append(_json_text(msg.get("output")))


def _tools_texts(tools: Any, out: list[str]) -> None:
    """Tool definitions count as input; the provider's own rendering differs (approximate)."""
    if not isinstance(tools, list):
        return
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        for key in ("name", "description"):
            if isinstance(fn.get(key), str):
                out.append(fn[key])
        for key in ("parameters", "input_schema"):
            if fn.get(key) is not None:
                out.append(_json_text(fn[key]))
        for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
            if isinstance(decl, dict):
                _tools_texts([decl], out)


def request_texts(body: Any) -> tuple[list[list[str]], int] | None:
    """Texts of a request, grouped per message, and a count of literal token ids.

    Chat `messages`, Responses `instructions` + `input`, Anthropic `system` + `messages`, Gemini
    `systemInstruction` + `contents`, embeddings `input` (strings or token-id arrays).
    None when the body is not a request this understands.
    """
    if not isinstance(body, dict):
        return None
    messages: list[list[str]] = []
    token_ids = 0
    found = False

    def add(item: Any) -> None:
        texts: list[str] = []
        _message_texts(item, texts)
        messages.append(texts)

    for key in ("system", "instructions", "systemInstruction", "system_instruction"):
        value = body.get(key)
        if value is None:
            continue
        found = True
        texts: list[str] = []
        _part_texts(value.get("parts") if isinstance(value, dict) else value, texts)
        messages.append(texts)
    for key in ("messages", "contents"):
        value = body.get(key)
        if isinstance(value, list):
            found = True
            for item in value:
                add(item)
    value = body.get("input")
    if isinstance(value, str):
        found = True
        messages.append([value])
    elif isinstance(value, list):
        found = True
        if value and all(isinstance(v, int) for v in value):  # one token-id array
            token_ids += len(value)
        else:
            for item in value:
                if isinstance(item, list) and all(isinstance(v, int) for v in item):
                    token_ids += len(item)
                else:
                    add(item)
    tools: list[str] = []
    _tools_texts(body.get("tools"), tools)
    if tools:
        messages.append(tools)
    return (messages, token_ids) if found else None


def is_embeddings_request(body: dict[str, Any]) -> bool:
    model = normalise_model(body.get("model") if isinstance(body.get("model"), str) else None)
    return "embedding" in model or "encoding_format" in body or "dimensions" in body

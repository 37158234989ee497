"""A chat stream's usual end read straight from its raw body-log records, in C.

Most long streams of the OpenAI chat API end the same way: a finish chunk, a usage chunk with
`choices: []`, `data: [DONE]`. parse/response.py's edges path finds them by decoding the last
1.5 KiB of body-log records into a str (`assemble_escaped`), cutting it into blocks and decoding
the two chunks with orjson (`openai_chat.parse_tail`), then building the `Usage` from the
dicts: about 95k instructions a request. `_tailscan.c` reads the same bytes where they lie:
it picks the same head and tail records, checks the first one as the edges path does, undoes
the records' JSON escapes into a small buffer, cuts the tail's last blocks as `str.rsplit`
does, and reads the two chunks with a small JSON reader that takes only a subset of JSON that
orjson surely reads the same (see the C file: printable ASCII, no escapes in strings, unsigned
integers of at most 15 digits, no key given twice...).

`string_of(b)` (used by `parse.body.assemble_escaped`) decodes one JSON string, a request's
joined escaped records, exactly as orjson does, or gives None (then orjson decides): see its
comment in the C file.

`chat_tail(parts, head_bytes, tail_bytes)` gives `(model, id, service_tier, finish_reason,
prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens, reasoning_tokens)` (the
cached and cache-write counts None when absent or null), exactly what the edges path reads on
its first try, or None whenever it cannot prove that: the Python path then decides, as it
always did (it may well give the same answer). It is None when the extension is not built or
`LLM_HEC_SIDECAR_PURE=1` (sidecar/native.py): the Python path is its pure twin, and
`tests/unit/test_tailscan.py` checks that both give the same `ParsedBody` on every recorded
fixture, on the edges tests' hostile streams and on hand-made variants of the usual end.

`anthropic_edges(parts, head_bytes, tail_bytes)` does the framing half of the same for an
Anthropic stream: the payloads of `message_start` and the first `content_block_start` from the
head records, of `message_delta` from the tail records (followed by `message_stop`), cut as
`_parse_edges` and `anthropic.parse_tail` cut them on their first try, as str (strict UTF-8),
or None; `anthropic.read_edges` decodes and reads them (the usage merge, iterations, cache
splits stay in Python). `anthropic_tail(parts, head_bytes, tail_bytes)` reads the three payloads
too, when each is an object in the JSON subset (string values it does not return read past
whatever text they hold, as for Gemini below): `(model, id, finish_reason, thinking,
service_tier, input, cache_read, cache_write, split, ephemeral_5m, ephemeral_1h, output,
thinking_tokens)`, the message's usage merged with the delta's as `merge_usage` merges them,
the counts plain integers (0: null or absent), or None (a count of another type, `iterations`,
no usage...: `anthropic_edges` then `read_edges` try); `anthropic.read_tail` fills the result.

`gemini_tail(parts, head_bytes, tail_bytes)` reads a Gemini SSE stream's last event as
`_parse_edges` and `gemini.parse_tail` read it on their first try (the records' `\\r` escapes
decoded and newlines normalised as `normalise_newlines` does; the event one `data:` line
without `"error"` or `"thought"`, with usage counts, a finish reason, `modelVersion` and
`responseId`): `(model, id, finish_reason, serviceTier, trafficType, prompt, toolUsePrompt,
cachedContent, candidates, thoughts)` (a string None when not a non-empty string, a count 0
when null or absent), or None; `gemini.read_tail` fills the result. Its JSON subset is the chat
reader's, but that a string value it does not return is read past whatever text it holds
(UTF-8 or not, any escape but `\\u`, no control character): the last chunk carries the answer's
last words.

`string_of(joined)` is the whole body's decode for `body.assemble_escaped`: the records' data
joined as one JSON string, read as `orjson.loads` reads it (the escapes undone into a buffer,
the UTF-8 decoded once: about 60 % of orjson's instructions on a stream's escaped text), or None
where it might differ (a `\\u` escape of a surrogate, invalid UTF-8, anything not a JSON
string): orjson then reads it as before. Its pure twin is orjson itself
(`tests/unit/test_tailscan.py` compares the two on hostile strings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar import native

# The type of the four readers: (parts, head_bytes, tail_bytes) -> their tuple, or None.
TailReader = Callable[[list[Any], int, int], tuple[Any, ...] | None]

_c = native.load("sidecar.parse._tailscan")
NATIVE = _c is not None

chat_tail: TailReader | None = _c.chat_tail if _c is not None else None
anthropic_edges: TailReader | None = _c.anthropic_edges if _c is not None else None
anthropic_tail: TailReader | None = _c.anthropic_tail if _c is not None else None
gemini_tail: TailReader | None = _c.gemini_tail if _c is not None else None
string_of: Callable[[bytes], str | None] | None = _c.string_of if _c is not None else None

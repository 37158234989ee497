"""The text mode's walk over a stream's events in C: calibration samples and estimates.

A stream parsed with its text (`want_text`) has every event read: its text pieces collected,
and every payload checked, since one that does not decode is counted (`malformed_events`).
In Python that is an `orjson.loads` of each event and a walk over the objects it builds, about
3 M instructions for a stream of a hundred events. `_textscan.c` does it without building them:
it frames the SSE blocks as `Chunks._blocks` does, checks each payload against a subset of JSON
that orjson surely accepts, and takes the text pieces of the usual shapes straight from the
text: `chat` reads OpenAI chat chunks as `openai_chat._texts` does, `gemini` Gemini chunks as
`gemini._texts`, `anthropic` the `content_block_start` / `content_block_delta` events as
`anthropic._stream_blocks` (the exact contract: the C file's head; the shapes read: its tables).

Any other block (a payload outside the subset or that does not decode, a shape the C walk does
not read: tool calls, content lists, a key given twice, ...) is handed back to the provider's
Python walk for that one event, in order (`Chunks.text_walk`), so the pieces, their order and
every count are exactly Python's. Each function is None when the extension is not built or
`LLM_HEC_SIDECAR_PURE=1` (sidecar/native.py): the providers then walk `Chunks.forward_kinds`,
the pure-Python twin (`tests/unit/test_text_fast_paths.py` checks that both give the same
`ParsedBody` on every recorded fixture and on hostile streams).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar import native

Scan = Callable[[str, Any, Callable[[int, str], Any]], Any]

_c = native.load("sidecar.parse._textscan")
NATIVE = _c is not None

chat: Scan | None = _c.chat if _c is not None else None
gemini: Scan | None = _c.gemini if _c is not None else None
anthropic: Scan | None = _c.anthropic if _c is not None else None

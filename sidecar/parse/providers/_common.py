"""Helpers shared by the provider parsers: a lazy view over a stream's events, JSON decoding,
null-tolerant number reading and the reasoning-model test.

`Chunks` is the one abstraction every stream parser walks: event `i` is framed (SSE) and decoded
(orjson) only when asked for, and at most once, so a parser can walk from the end of a stream and
decode the two or three events that carry usage.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.parse.sse import block_event_name, parse_block, peek_type, split_blocks

_UNSET: Any = object()


def as_int(value: Any) -> int:
    """A non-negative token count from a JSON value; 0 for null, missing, bools and junk."""
    if type(value) is int:
        return value if value > 0 else 0
    if type(value) is float and value == value and 0 < value < 1e15:
        return int(value)
    return 0


def as_dict(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}


def as_str(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if type(value) is str and value else None


def loads(data: str) -> Any:
    """orjson.loads that returns `_UNSET` instead of raising."""
    try:
        return orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return _UNSET


def is_unset(value: Any) -> bool:
    return value is _UNSET


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except (TypeError, ValueError):
        return ""


class Chunks:
    """The events of one stream, framed and decoded on demand.

    Built either from an SSE body (`from_sse`) or from already decoded objects (`from_objects`,
    the Gemini JSON-array form). `obj(i)` is the decoded JSON object of event `i` (None when the
    payload is not a JSON object, for example `[DONE]`); payloads that fail to decode are counted
    in `malformed`, except the unterminated last event of a cut stream.
    """

    __slots__ = ("_blocks", "_events", "_objs", "_tail_cut", "malformed", "n")

    def __init__(self) -> None:
        self._blocks: list[str] = []
        self._events: list[Any] = []
        self._objs: list[Any] = []
        self._tail_cut = False
        self.malformed = 0
        self.n = 0

    @classmethod
    def from_sse(cls, body: str) -> Chunks:
        self = cls()
        blocks, complete = split_blocks(body)
        self._blocks = blocks
        self._tail_cut = not complete
        self.n = len(blocks)
        self._events = [_UNSET] * self.n
        self._objs = [_UNSET] * self.n
        return self

    @classmethod
    def from_objects(cls, objects: list[Any]) -> Chunks:
        self = cls()
        self.n = len(objects)
        self._events = [(None, "")] * self.n
        self._objs = [o if type(o) is dict else None for o in objects]
        return self

    def event(self, i: int) -> tuple[str | None, str] | None:
        """`(event_name, data)` of block `i`; None for a block without data (comments only)."""
        ev = self._events[i]
        if ev is _UNSET:
            ev = self._events[i] = parse_block(self._blocks[i])
        return ev

    def name(self, i: int) -> str | None:
        """The event's name: the `event:` line, else the payload's `type` (not decoded)."""
        if self._blocks:
            name = block_event_name(self._blocks[i])
            if name:
                return name
        ev = self.event(i)
        return peek_type(ev[1]) if ev else None

    def data(self, i: int) -> str:
        """Raw payload of event `i` ("" when unknown: decoded objects carry no raw text)."""
        ev = self.event(i)
        return ev[1] if ev else ""

    def raw_has(self, i: int, needle: str) -> bool:
        """Whether event `i`'s raw payload contains `needle` (always True without raw text)."""
        if not self._blocks:
            return True
        return needle in self._blocks[i]

    def obj(self, i: int) -> dict[str, Any] | None:
        o = self._objs[i]
        if o is not _UNSET:
            return o
        ev = self.event(i)
        o = None
        if ev is not None and ev[1].strip() and not ev[1].startswith("[DONE]"):
            value = loads(ev[1])
            if type(value) is dict:
                o = value
            elif value is _UNSET and not (self._tail_cut and i == self.n - 1):
                self.malformed += 1
        self._objs[i] = o
        return o

    def is_done(self, i: int) -> bool:
        """Whether event `i` is the OpenAI `[DONE]` terminator."""
        ev = self.event(i)
        return ev is not None and ev[1].startswith("[DONE]")

    def any_data(self) -> bool:
        return any(self.event(i) is not None for i in range(self.n))


def body_has(body: str, *needles: str) -> bool:
    """Whether any needle occurs in the body (one C-level scan each)."""
    return any(needle in body for needle in needles)


def is_reasoning_model(model: str | None) -> bool:
    """Whether a model name is an OpenAI o-series or gpt-5 family reasoning model."""
    if not model:
        return False
    name = model.lower().rsplit("/", 1)[-1]
    if len(name) >= 2 and name[0] == "o" and name[1].isdigit():
        return True
    return name.startswith("gpt-5") and "-chat" not in name

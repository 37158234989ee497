"""Helpers shared by the provider parsers: a lazy view over a stream's events, JSON decoding,
null-tolerant number reading and the reasoning-model test.

`Chunks` is the one abstraction every stream parser walks: event `i` is framed (SSE) and decoded
(orjson) only when asked for, and at most once, so a parser can walk from the end of a stream and
decode the two or three events that carry usage.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from sidecar.parse.sse import normalise_newlines, parse_block, peek_type
from sidecar.types import Usage

_UNSET: Any = object()


def as_int(value: Any) -> int:
    """A non-negative token count from a JSON value; 0 for null, missing, bools and junk."""
    if type(value) is int:
        return value if value > 0 else 0
    if type(value) is float and value == value and 0 < value < 1e15:
        return int(value)
    return 0


COUNT_MAX = 1 << 53  # the largest integer a double holds exactly (parse/fields.py says why)


class Counts:
    """Reads the token counts of one usage object, noting whether any was present but not a
    non-negative integer (a string "1200", a negative, a fraction, above 2^53, a list...).
    Such a usage is marked `invalid`: it is flagged and never priced as if it were $0."""

    __slots__ = ("invalid",)

    def __init__(self) -> None:
        self.invalid = False

    def __call__(self, value: Any) -> int:
        if type(value) is int:
            if 0 <= value <= COUNT_MAX:
                return value
        elif value is None:
            return 0
        elif type(value) is float and value.is_integer() and 0 <= value <= COUNT_MAX:
            return int(value)
        self.invalid = True
        return 0

    def usage(self, usage: Usage) -> Usage:
        """`usage` with its subsets clamped and its `invalid` mark set."""
        usage.invalid = self.invalid
        return subset_clamped(usage)


def subset_clamped(usage: Usage) -> Usage:
    """Keep the subset fields within their totals (a provider reporting more reasoning than
    output must not make a later `output - reasoning` negative). Each is `min(a, b)` written
    out (`b if b < a else a`, what `min` gives): the builtin costs ~700 instructions a call,
    four calls per parsed usage."""
    total = usage.input_tokens
    cached = usage.cached_input_tokens
    cached = total if total < cached else cached
    usage.cached_input_tokens = cached
    room = total - cached
    write = usage.cache_write_input_tokens
    write = room if room < write else write
    usage.cache_write_input_tokens = write
    write_1h = usage.cache_write_1h_input_tokens
    usage.cache_write_1h_input_tokens = write if write < write_1h else write_1h
    output = usage.output_tokens
    reasoning = usage.reasoning_tokens
    usage.reasoning_tokens = output if output < reasoning else reasoning
    return usage


def as_dict(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}


def as_str(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if type(value) is str and value else None


_orjson_loads = orjson.loads
_DECODE_ERRORS = (orjson.JSONDecodeError, TypeError, ValueError)


def loads(data: str) -> Any:
    """orjson.loads that returns `_UNSET` instead of raising."""
    try:
        return _orjson_loads(data)
    except _DECODE_ERRORS:
        return _UNSET


def is_unset(value: Any) -> bool:
    return value is _UNSET


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except (TypeError, ValueError):
        return ""


class Event:
    """One event of a stream: its name, its raw payload, and the payload decoded on demand."""

    __slots__ = ("_obj", "_stream", "data", "last", "name")

    def __init__(self, stream: Chunks | None, name: str | None, data: str, last: bool) -> None:
        self._stream = stream
        self._obj: Any = _UNSET
        self.name = name
        self.data = data
        self.last = last  # the stream's last event (its tail may have been cut)

    def kind(self) -> str | None:
        """The `event:` name, else the payload's `type` read without decoding."""
        return self.name or peek_type(self.data)

    def has(self, needle: str) -> bool:
        """Whether the raw payload contains `needle` (True when there is no raw text)."""
        return needle in self.data if self.data else True

    def is_done(self) -> bool:
        return self.data.startswith("[DONE]")

    def obj(self) -> dict[str, Any] | None:
        """The payload as a JSON object; None for `[DONE]`, non-objects and junk (counted)."""
        o = self._obj
        if o is _UNSET:
            o = None
            data = self.data
            if data and not data.startswith("[DONE]") and not data.isspace():
                try:
                    value = _orjson_loads(data)
                except _DECODE_ERRORS:
                    value = _UNSET
                if type(value) is dict:
                    o = value
                elif value is _UNSET and self._stream and not (self.last and self._stream.tail_cut):
                    self._stream.malformed += 1
            self._obj = o
        return o


class Chunks:
    """The events of one stream, framed and decoded lazily, walked from either end.

    `from_sse` frames an SSE body without splitting all of it: `backward()` carves blocks off the
    end with `rfind`, `forward()` off the start with `find`, so a parser that needs the last
    three events touches only those. `from_objects` wraps already decoded chunks (the Gemini
    JSON-array form). Payloads that fail to decode are counted in `malformed`, except the
    unterminated last event of a cut stream.
    """

    __slots__ = ("_cache", "_last_start", "_objects", "malformed", "tail_cut", "text")

    def __init__(self, text: str = "", objects: list[Any] | None = None) -> None:
        self.text = text
        self._objects = objects
        self._cache: dict[int, Event] = {}
        self.malformed = 0
        self.tail_cut = bool(text) and not text.endswith("\n\n")
        end = len(text)
        while end and text[end - 1] == "\n":
            end -= 1
        self._last_start = text.rfind("\n\n", 0, end) + 2 if end else -1
        if self._last_start == 1:
            self._last_start = 0

    def close(self) -> None:
        """Drop the events, once parsed: an event refers back to its stream (for the malformed
        count), a cycle that only the cyclic collector would free, and with it the stream's
        text, a whole body (the pipeline runs that collector rarely)."""
        self._cache.clear()

    @classmethod
    def from_sse(cls, body: str) -> Chunks:
        return cls(normalise_newlines(body))

    @classmethod
    def from_objects(cls, objects: list[Any]) -> Chunks:
        return cls("", objects)

    def _event(self, start: int, end: int) -> Event | None:
        ev = self._cache.get(start)
        if ev is None:
            framed = parse_block(self.text[start:end])
            if framed is None:
                return None
            ev = self._cache[start] = Event(self, *framed, start == self._last_start)
        return ev

    def _object_events(self) -> list[Event]:
        out = []
        for o in self._objects or ():
            ev = Event(None, None, "", False)
            ev._obj = o if type(o) is dict else None
            out.append(ev)
        return out

    def backward(self) -> Iterator[Event]:
        """Events from the last to the first."""
        if self._objects is not None:
            yield from reversed(self._object_events())
            return
        text = self.text
        end = len(text)
        while end > 0:
            while end > 0 and text[end - 1] == "\n":
                end -= 1
            if end == 0:
                return
            sep = text.rfind("\n\n", 0, end)
            start = sep + 2 if sep >= 0 else 0
            ev = self._event(start, end)
            end = sep if sep >= 0 else 0
            if ev is not None:
                yield ev

    def _blocks(self) -> Iterator[tuple[int, str]]:
        """(offset, text) of every block, split with one C-level `str.split`. A piece may start
        with newlines left over from a run of three or more: they are skipped, as `forward()`
        skips them, and the offset moved past them, so that both give the same offsets."""
        start = 0
        for block in self.text.split("\n\n"):
            at = start
            start += len(block) + 2
            if not block:
                continue
            if block[0] == "\n":
                stripped = block.lstrip("\n")
                if not stripped:
                    continue
                at += len(block) - len(stripped)
                block = stripped
            yield at, block

    def forward_all(self) -> Iterator[Event]:
        """Every event from the first to the last, as `forward()` gives them, framed with one
        C-level `str.split` instead of one `find` per event: for a parser that reads them all
        (`want_text`). Both give the same events, at the same offsets (shared through the
        cache)."""
        if self._objects is not None:
            yield from self._object_events()
            return
        cache = self._cache
        last_start = self._last_start
        for at, block in self._blocks():
            ev = cache.get(at)
            if ev is None:
                framed = parse_block(block)
                if framed is None:
                    continue
                ev = cache[at] = Event(self, framed[0], framed[1], at == last_start)
            yield ev

    def forward_objects(self) -> Iterator[dict[str, Any] | None]:
        """`ev.obj()` of every event `forward_all()` gives, in order, for a parser that reads
        each payload once (`want_text`): framed and decoded inline, without an `Event` per
        event (on a long stream those cost more than the decoding). A payload that does not
        decode gets its `Event` (cached, counted once in `malformed` as `obj()` counts it); one
        that decodes is decoded again if `backward()` reaches it (the last few events)."""
        if self._objects is not None:
            for o in self._objects:
                yield o if type(o) is dict else None
            return
        for _, o in self.forward_kinds(None):
            yield o

    def forward_kinds(
        self, kinds: frozenset[str] | None
    ) -> Iterator[tuple[str | None, dict[str, Any] | None]]:
        """`(ev.kind(), ev.obj())` of the events `forward_all()` gives whose kind is in `kinds`
        (None: every event, its kind then given as None), in order, framed and decoded inline
        as `forward_objects` does (no `Event` but for a payload that does not decode). An event
        of another kind is neither decoded nor counted: `forward_all()` then `ev.kind()` and
        `ev.obj()` of the ones in `kinds` give the same pairs and the same `malformed` count."""
        if self._objects is not None:
            for ev in self._object_events():
                if kinds is None:
                    yield None, ev._obj
                elif (kind := ev.kind()) in kinds:
                    yield kind, ev._obj
            return
        cache = self._cache
        check = bool(cache)  # events are cached only behind this walk: none ahead if empty
        framed = self._framed
        for at, block in self._blocks():
            if check:
                ev = cache.get(at)
                if ev is not None:
                    kind = None if kinds is None else ev.kind()
                    if kinds is None or kind in kinds:
                        yield kind, ev.obj()
                    continue
            got = framed(at, block, kinds)
            if got is not None:
                yield got

    def _framed(
        self, at: int, block: str, kinds: frozenset[str] | None
    ) -> tuple[str | None, dict[str, Any] | None] | None:
        """`(kind, obj)` of the block at offset `at`, as `forward_kinds(kinds)` gives it (the
        block not yet cached), or None: no event there, or one of another kind."""
        name = None
        if block.startswith("data: ") and "\n" not in block:
            data = block[6:]  # parse_block's fast path, inline: this runs for every event
        else:
            framed = parse_block(block)
            if framed is None:
                return None
            name, data = framed
        kind = None
        if kinds is not None:
            kind = name or peek_type(data)
            if kind not in kinds:
                return None
        if not data or data.startswith("[DONE]") or data.isspace():
            return kind, None
        try:
            value = _orjson_loads(data)
        except _DECODE_ERRORS:
            ev = self._cache[at] = Event(self, name, data, at == self._last_start)
            return kind, ev.obj()
        return kind, value if type(value) is dict else None

    def text_walk(
        self,
        scan: Callable[[str, Any, Callable[[int, str], Any]], Any] | None,
        target: Any,
        on_event: Callable[[str | None, dict[str, Any] | None], Any],
        kinds: frozenset[str] | None = None,
    ) -> Any:
        """The text mode's walk of every event by `scan`, a `textscan` function in C (it
        reads the usual events itself into `target` and hands each other block to Python:
        `on_event(kind, obj)` of what `forward_kinds(kinds)` gives for it); its answer, or None
        when it cannot run (no scanner, decoded objects, events already cached): the caller
        then walks `forward_kinds` itself, `target` untouched."""
        if scan is None or self._objects is not None or self._cache or type(self) is not Chunks:
            return None
        framed = self._framed

        def slow(at: int, block: str) -> Any:
            got = framed(at, block, kinds)
            return False if got is None else on_event(*got)

        return scan(self.text, target, slow)

    def read_objects(
        self,
        scan: Callable[[str, Any, Callable[[int, str], Any]], Any] | None,
        out: list[str],
        read: Callable[[dict[str, Any]], bool],
    ) -> bool:
        """`read(obj)` of every event's object, in order, for a walk that appends the text
        pieces to `out` (`scan`, in C, reads the usual events itself: `text_walk`); whether
        one of them said True."""

        def on_event(kind: str | None, obj: dict[str, Any] | None) -> bool:
            return obj is not None and read(obj)

        said = self.text_walk(scan, out, on_event)
        if said is None:
            said = False
            for obj in self.forward_objects():
                if obj is not None:
                    said = read(obj) or said
        return bool(said)

    def forward(self) -> Iterator[Event]:
        """Events from the first to the last."""
        if self._objects is not None:
            yield from self._object_events()
            return
        text = self.text
        size = len(text)
        pos = 0
        while pos < size:
            while pos < size and text[pos] == "\n":
                pos += 1
            if pos >= size:
                return
            sep = text.find("\n\n", pos)
            end = sep if sep >= 0 else size
            ev = self._event(pos, end)
            pos = end + 2 if sep >= 0 else size
            if ev is not None:
                yield ev


def _no_head() -> str | None:
    return None


class EdgeChunks(Chunks):
    """A long stream seen through its two edges only: `tail` (whole events from the end of the
    body) and, decoded only if a parser walks forward, a head (whole events from its start).

    `backward()` walks the tail, `forward()` the head; a walk that would go past its edge (into
    the middle that was never decoded) ends there and sets `crossed`. While `crossed` is False
    every event a parser saw is the whole body's own event, met in the same order, so its
    answer is the whole body's answer (parse/response.py relies on this). The `want_text`
    walks (`forward_all`, `forward_objects`, `forward_kinds`) read every event: they only cross.
    """

    __slots__ = ("_back", "_blocks_back", "_head", "_head_source", "_last", "crossed")

    def __init__(self, tail: str, head_source: Callable[[], str | None]) -> None:
        super().__init__(tail)
        self._blocks_back: list[str] | None = None
        self._back: dict[int, Event] = {}
        self._last = -1  # the index of the tail's last block
        self._head_source = head_source
        self._head: Chunks | None = None
        self.crossed = False

    def backward(self) -> Iterator[Event]:
        """`Chunks.backward()` framed with one C-level `str.split` of the tail: the same blocks
        (a piece keeps the newlines of a run of three or more, stripped here as `rfind` leaves
        them out), the same events, the last one marked `last`."""
        blocks = self._blocks_back
        if blocks is None:
            blocks = self._blocks_back = self.text.split("\n\n")
            last = len(blocks) - 1
            while last >= 0 and not blocks[last].strip("\n"):
                last -= 1
            self._last = last
        cache = self._back
        i = len(blocks)
        while i:
            i -= 1
            ev = cache.get(i)
            if ev is None:
                block = blocks[i]
                if not block or block[0] == "\n" or block[-1] == "\n":
                    block = block.strip("\n")
                    if not block:
                        continue
                framed = parse_block(block)
                if framed is None:
                    continue
                ev = cache[i] = Event(self, *framed, i == self._last)
            yield ev
        self.crossed = True  # asked for the event before the tail's first

    def forward(self) -> Iterator[Event]:
        head = self._head
        if head is None:
            text = self._head_source()
            if text is None:
                self.crossed = True
                return
            head = self._head = Chunks(text)
        for ev in head.forward():
            ev._stream = self  # a malformed head event is counted here, as in the whole body
            ev.last = False  # the head ends before the tail begins: never the body's last event
            yield ev
        self.crossed = True  # asked for the event after the head's last

    def close(self) -> None:
        """`Chunks.close`, and drop the head source (it holds the body's parts)."""
        self._head_source = _no_head
        self._head = None
        self._back.clear()
        self._cache.clear()

    def forward_all(self) -> Iterator[Event]:
        self.crossed = True
        return iter(())

    def forward_objects(self) -> Iterator[dict[str, Any] | None]:
        self.crossed = True
        return iter(())

    def forward_kinds(
        self, kinds: frozenset[str] | None
    ) -> Iterator[tuple[str | None, dict[str, Any] | None]]:
        self.crossed = True
        return iter(())


# Output overheads the provider bills beyond the text a client sees (contract 4,
# `ParsedBody.output_extra_tokens`). Learned on the FIT half of the recorded pool
# (tests/fixtures/streams-pool, gpt-4o / gpt-4o-mini / gpt-5-mini chat streams with their
# usage; bench/fit_estimation.py derives them, docs/estimation.md):
#   - a text answer that ends with `stop` is marked with its end-of-message token, +1 (the
#     estimator replaces the mark with what is billed: `sidecar.enrich.output_rules.end_tokens`);
#   - one tool call bills its name (counted as text) plus 7 tokens of framing;
#   - parallel calls (n >= 2) are wrapped: 7 per call plus 14 for the wrapper.
# Responses function calls use the chat figures (same models, same rendering; no pool data).
END_OF_MESSAGE_TOKENS = 1
TOOL_CALL_TOKENS = 7
PARALLEL_TOOL_CALLS_TOKENS = 14
# Anthropic (claude 4.x; read off the FIT half of the pool by bench/fit_estimation.py). Claude
# writes a tool call as markup around its arguments, not as the JSON the API streams: a wrapper
# opened once per message, an invoke element carrying the tool's name, and one element per
# top-level parameter holding the parameter's name and its value (strings raw, other values as
# JSON). The name, parameter names and values are counted as text (and scaled by the model's
# calibration); the markup is billed as fixed tokens:
#   - every message ~3 tokens of its own;
#   - the first tool_use block of a message ~32 (wrapper and invoke element), each further
#     block of the same message ~13 (its own invoke element);
#   - every top-level parameter ~15 (its element).
# `tool_choice` any / tool prefill part of the markup, which is then not billed (applied by the
# estimator from the request: `sidecar.enrich.output_rules`). Anthropic's tokenizer is not
# public: the per-model calibration scales the counted text, never these.
ANTHROPIC_MESSAGE_TOKENS = 3
ANTHROPIC_TOOL_USE_TOKENS = 32
ANTHROPIC_NEXT_TOOL_USE_TOKENS = 13
ANTHROPIC_TOOL_PARAM_TOKENS = 15
# Gemini function calls: name and args are counted as text; framing unmeasured (no recorded
# stream with a function call), taken as the chat figure.
GEMINI_FUNCTION_CALL_TOKENS = 7


def tool_call_overhead(calls: int) -> int:
    """Framing tokens of `calls` tool calls in one OpenAI response."""
    if calls <= 0:
        return 0
    if calls == 1:
        return TOOL_CALL_TOKENS
    return TOOL_CALL_TOKENS * calls + PARALLEL_TOOL_CALLS_TOKENS


def body_has(body: str, *needles: str) -> bool:
    """Whether any needle occurs in the body (one C-level scan each)."""
    return any(needle in body for needle in needles)


@functools.lru_cache(maxsize=256)  # pure; called per request with one of a few names
def is_reasoning_model(model: str | None) -> bool:
    """Whether a model name is an OpenAI o-series or gpt-5 family reasoning model."""
    if not model:
        return False
    name = model.lower().rsplit("/", 1)[-1]
    if len(name) >= 2 and name[0] == "o" and name[1].isdigit():
        return True
    return name.startswith("gpt-5") and "-chat" not in name

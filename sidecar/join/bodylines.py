"""A finished request's body-log lines over its chunks, cut only where they are read.

The join keeps a request's lines of one read block as one bytes object, the lines joined by
b"\\n" (a chunk: see `chunk_lines` in join/pending.py). `Completed.parts` is still a sequence of
lines, with `len`, indexes from both ends and slices: `BodyLines` presents the chunks so, cutting
lines on demand. The edges parse (parse/response.py) reads a few lines at each end: those are
found by walking from the front (`find`) or from the back (`rfind`), one line per step, and kept;
a read anywhere else, or a walk over everything (text mode, the general path) cuts every line
once. `_bodylines.c` is the same class in C (a read there costs a few dozen instructions, not a
Python call); `PureBodyLines` is its twin.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Any

from sidecar import native

WALK = 64  # lines found by walking from either end before every line is cut instead


class PureBodyLines(Sequence):
    """The lines of `chunks` (body-log lines and chunks of them, in order); `n` is how many
    there are (the join counts them as it stores them)."""

    __slots__ = ("_all", "_back", "_bat", "_bend", "_chunks", "_fat", "_fpos", "_front", "_n")

    def __init__(self, chunks: list, n: int) -> None:
        self._chunks = chunks
        self._n = n
        self._all: list | None = None  # every line, once something past the walks is read
        self._front: list = []  # lines found from the front, in order
        self._fat = 0  # the front walk's chunk ...
        self._fpos = 0  # ... and the offset of its next line
        self._back: list = []  # lines found from the back, the last first
        self._bat = len(chunks) - 1  # the back walk's chunk ...
        self._bend = -1  # ... and the end of its next line (-1: the chunk's end)

    @property
    def chunks(self) -> list:
        """The lines and chunks as the join kept them (parse/body.py cuts them in one pass)."""
        return self._chunks

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        n = self._n
        if type(i) is not int:
            if isinstance(i, slice):
                return self._slice(*i.indices(n))
            i = operator.index(i)  # TypeError for anything else, as a list
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("body line index out of range")
        front = self._front
        if i < len(front):
            return front[i]
        k = n - 1 - i  # from the back
        back = self._back
        if k < len(back):
            return back[k]
        if self._all is None:
            if i == len(front) and i < WALK:
                return self._step_front()
            if k == len(back) and k < WALK:
                return self._step_back()
            return self.lines()[i]
        return self._all[i]

    def _slice(self, start: int, stop: int, step: int) -> list:
        if step == 1:
            if stop <= len(self._front):
                return self._front[start:stop]
            n = self._n
            if start >= n - len(self._back):  # all found from the back already
                return self._back[max(n - stop, 0) : n - start][::-1]
        return [self[j] for j in range(start, stop, step)]

    def _step_front(self) -> Any:
        chunk = self._chunks[self._fat]
        at = self._fpos
        if type(chunk) is bytes:
            nl = chunk.find(b"\n", at)
            if nl >= 0:
                self._fpos = nl + 1
                line = chunk[at:nl]
                self._front.append(line)
                return line
            line = chunk[at:] if at else chunk
        else:
            line = chunk
        self._fat += 1
        self._fpos = 0
        self._front.append(line)
        return line

    def _step_back(self) -> Any:
        if self._bat < 0:  # a length the chunks do not have (C: IndexError too, not a wrap)
            raise IndexError("BodyLines: fewer lines than its length")
        chunk = self._chunks[self._bat]
        end = self._bend
        if type(chunk) is bytes:
            if end < 0:
                end = len(chunk)
            nl = chunk.rfind(b"\n", 0, end)
            if nl >= 0:
                self._bend = nl
                line = chunk[nl + 1 : end]
                self._back.append(line)
                return line
            line = chunk[:end] if end < len(chunk) else chunk
        else:
            line = chunk
        self._bat -= 1
        self._bend = -1
        self._back.append(line)
        return line

    def edges(self, head_bytes: int, tail_bytes: int, /) -> list:
        """The head's lines (the first ones that reach `head_bytes`) and the tail's (the last
        ones that reach `tail_bytes`, never into the head), as one list, read from both ends
        without cutting the rest; every line when the two meet (parse/response.py reads its
        edge records so). The sizes are integers (TypeError else), as in C."""
        head_bytes, tail_bytes = operator.index(head_bytes), operator.index(tail_bytes)
        n = self._n
        h = size = 0  # the head: self[:h]
        while h < n and size < head_bytes:
            size += len(self[h])
            h += 1
        t = n  # the tail: self[t:]
        size = 0
        while t > h and size < tail_bytes:
            t -= 1
            size += len(self[t])
        if t <= h:
            return list(self)
        return self[:h] + self[t:]

    def lines(self) -> list:
        """Every line, as a list (cut once)."""
        if self._all is None:
            out: list = []
            for chunk in self._chunks:
                if type(chunk) is bytes:
                    out += chunk.split(b"\n")
                else:
                    out.append(chunk)
            self._all = out
        return self._all

    def __iter__(self) -> Iterator[Any]:
        return iter(self.lines())

    def __reversed__(self) -> Iterator[Any]:
        for i in range(self._n - 1, -1, -1):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BodyLines):
            return self.lines() == other.lines()
        if isinstance(other, list | tuple):
            return self.lines() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BodyLines({self._n} lines in {len(self._chunks)} parts)"


_bodylines = native.load("sidecar.join._bodylines")  # the same class in C, if built
BodyLines: type = _bodylines.BodyLines if _bodylines else PureBodyLines
if _bodylines:
    Sequence.register(_bodylines.BodyLines)

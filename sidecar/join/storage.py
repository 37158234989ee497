"""How an open request's body is stored: appended raw, compacted when it grows, capped.

A mixin of `Joiner` (join/table.py): it uses the table's `stats`, `max_body_bytes`, `_compact`
and `_recost`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar.join.pending import Pending
from sidecar.types import NOT_A_STREAM, Compacted

# compact(parts, head) -> Compacted | NOT_A_STREAM | None (no event boundary to cut at yet)
CompactFn = Callable[[list, Any], Compacted | None]


class Storage:
    stats: dict[str, int]
    max_body_bytes: int
    _compact: CompactFn | None

    _pending: dict[str, Pending]
    squeeze_bytes = 2048  # under pressure, streams are compacted past this many raw bytes

    def _recost(self, p: Pending) -> None:
        raise NotImplementedError

    def squeeze(self) -> None:
        """Under pressure (over half the byte bound): compact every open stream past
        `squeeze_bytes`, not only those receiving data, before anything has to give way."""
        for p in list(self._pending.values()):
            if p.size > self.squeeze_bytes and p.size > p.floor and not p.nocompact:
                self._try_compact(p, [])

    def _cap(self, p: Pending, parts: list) -> None:
        """Keep what fits of a body that cannot be compacted (not a stream, or one event larger
        than max_body_bytes)."""
        for part in parts:
            if p.size + len(part) > self.max_body_bytes:
                break
            p.parts.append(part)
            p.size += len(part)
        if not p.truncated:
            p.truncated = True
            self.stats["bodies_truncated"] += 1
        self._recost(p)

    def _try_compact(self, p: Pending, more: list) -> bool:
        """Compact `p` with `more` parts appended; False when it cannot be done."""
        if self._compact is None or p.nocompact or p.text is not None:
            return False
        parts = p.parts + more if more else p.parts
        r = self._compact(parts, p.head)
        if r is NOT_A_STREAM:
            p.nocompact = True
            return False
        if r is None:  # no event boundary yet (one large event): try again at twice the size
            if more:
                return False
            p.floor = p.size * 2
            return True
        self.stats["compactions"] += 1
        if r.bad_parts:
            self.stats["compaction_invalid_parts"] += r.bad_parts
        if r.head is not None:
            p.head = r.head
            p.head_size = len(r.head)
        p.parts = r.tail
        p.size = sum(map(len, r.tail))
        p.floor = p.size * 2
        if r.text:
            # kept as one UTF-8 string per compaction: thousands of small str objects cost more
            # in headers than their text, and one emoji makes a str 4 bytes per character (the
            # estimator counts the text joined anyway)
            text = "".join(r.text).encode()
            room = self.max_body_bytes - p.prior_len
            if len(text) > room:
                if not p.truncated:
                    p.truncated = True
                    self.stats["text_truncated"] += 1
                text = text[: max(0, room)]  # a character cut here decodes as U+FFFD: harmless
            if p.prior is None:
                p.prior = []
            p.prior.append(text)
            p.prior_len += len(text)
        p.prior_extra += r.extra_tokens
        self._recost(p)
        return p.size <= self.max_body_bytes

from __future__ import annotations

from sidecar.join import Joiner
from sidecar.types import BODY_DATA, BODY_END, BODY_WHOLE, AccessRecord, BodyRecord, Completed


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def data(rid: str, s: str, ts: float = 1.0) -> BodyRecord:
    return BodyRecord(rid, BODY_DATA, ts, s)


def end(rid: str, how: str = "complete") -> BodyRecord:
    return BodyRecord(rid, BODY_END, 2.0, "", how)


def test_body_then_access_completes_once_with_joined_body() -> None:
    j, out = Joiner(), []
    j.add_body(data("a", "data: 1\n"), "s", out)
    j.add_body(data("b", "x"), "s", out)
    j.add_body(data("a", "\ndata: 2\n\n"), "s", out)
    j.add_body(end("a"), "s", out)
    assert out == []
    j.add_access(AccessRecord("a", status=200), "s", "/l/access.log", out)
    assert len(out) == 1
    c: Completed = out[0]
    assert (c.request_id, c.text(), c.end, c.expired) == (
        "a",
        "data: 1\n\ndata: 2\n\n",
        "complete",
        False,
    )
    assert c.source_path == "/l/access.log" and c.first_ts == 1.0 and c.last_ts == 2.0
    assert len(j) == 1  # b still pending


def test_access_first_waits_for_end() -> None:
    j, out = Joiner(), []
    j.add_access(AccessRecord("a", status=499), "s", None, out)
    assert out == []
    j.add_body(end("a", "client_closed"), "s", out)
    assert len(out) == 1 and out[0].text() == "" and out[0].end == "client_closed"


def test_late_record_after_completion_is_counted_not_reemitted() -> None:
    j, out = Joiner(), []
    j.add_body(end("a"), "s", out)
    j.add_access(AccessRecord("a"), "s", None, out)
    j.add_body(data("a", "late"), "s", out)
    assert len(out) == 1 and j.late_records == 1 and len(j) == 0


def test_expiry_emits_what_is_known_flagged() -> None:
    clock = Clock()
    j, out = Joiner(expire_after_secs=10, clock=clock), []
    j.add_body(data("a", "d"), "s", out)
    clock.now = 5
    j.add_access(AccessRecord("b"), "s", None, out)
    clock.now = 12
    j.expire(out)
    assert [c.request_id for c in out] == ["a"] and out[0].expired and out[0].access is None
    clock.now = 16
    j.expire(out)
    assert [c.request_id for c in out] == ["a", "b"] and out[1].text() is None


def test_pending_cap_evicts_oldest() -> None:
    j, out = Joiner(max_pending_requests=2), []
    for rid in "abc":
        j.add_access(AccessRecord(rid), "s", None, out)
    assert [c.request_id for c in out] == ["a"] and out[0].expired and j.evicted == 1


def test_body_cap_truncates_and_flags() -> None:
    j, out = Joiner(max_body_bytes=5), []
    j.add_body(data("a", "123"), "s", out)
    j.add_body(data("a", "456"), "s", out)
    j.add_body(end("a"), "s", out)
    j.add_access(AccessRecord("a"), "s", None, out)
    assert out[0].text() == "123" and out[0].body_truncated and j.bodies_truncated == 1


def test_whole_body_record_and_access_only_source() -> None:
    j, out = Joiner(), []
    j.add_body(BodyRecord("a", BODY_WHOLE, 1.0, "{}", "complete", "application/json"), "s", out)
    j.add_access(AccessRecord("a"), "s", None, out)
    assert out[0].text() == "{}" and out[0].content_type == "application/json"
    j2, out2 = Joiner(), []
    j2.has_body["s"] = False
    j2.add_access(AccessRecord("x"), "s", None, out2)
    assert len(out2) == 1 and out2[0].text() is None


def test_flush_emits_everything() -> None:
    j, out = Joiner(), []
    j.add_body(data("a", "d"), "s", out)
    j.add_access(AccessRecord("b"), "s", None, out)
    j.flush(out)
    assert sorted(c.request_id for c in out) == ["a", "b"] and len(j) == 0

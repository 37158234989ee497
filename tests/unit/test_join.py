"""The join's rules, in log time: completion, completion without a body, expiry, duplicates, late
records, the byte bound and bounded flushing (sidecar/join/)."""

from __future__ import annotations

from sidecar.join import Joiner, may_read
from sidecar.join.clock import Frontier
from sidecar.types import BODY_DATA, BODY_END, BODY_WHOLE, AccessRecord, BodyRecord, Completed


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def data(rid: str, s: str, ts: float = 1.0) -> BodyRecord:
    return BodyRecord(rid, BODY_DATA, ts, s)


def end(rid: str, how: str = "complete", ts: float = 2.0) -> BodyRecord:
    return BodyRecord(rid, BODY_END, ts, "", how)


def acc(rid: str, t: float | None = 2.0, status: int = 200) -> AccessRecord:
    return AccessRecord(rid, time=t, status=status)


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
    j.add_access(acc("a", status=499), "s", None, out)
    assert out == []
    j.add_body(end("a", "client_closed"), "s", out)
    assert len(out) == 1 and out[0].text() == "" and out[0].end == "client_closed"


def test_no_body_completes_when_the_body_log_passes_the_access_time_plus_skew() -> None:
    """A 429 with no body record: complete (not expired) once the body reader is past it."""
    clock = Clock()
    j, out = Joiner(skew_secs=1.0, clock=clock), []
    j.body_front.advance(100.0)
    j.add_access(acc("r", t=100.5, status=429), "s", None, out)
    j.body_front.advance(101.4)
    j.advance(out)
    assert out == []  # 101.4 is not past 100.5 + 1
    j.body_front.advance(101.6)
    j.advance(out)
    assert [c.request_id for c in out] == ["r"]
    assert not out[0].expired and out[0].body is None
    assert j.stats["completed_without_body"] == 1 and j.stats["expired"] == 0


def test_no_body_completes_after_skew_of_wall_time_when_the_body_log_is_idle() -> None:
    clock = Clock()
    j, out = Joiner(skew_secs=1.0, clock=clock), []
    j.body_front.advance(100.0)
    j.body_front.idle(now=0.0)  # caught up, nothing new
    clock.now = 5.0
    j.add_access(acc("r", t=100.2, status=429), "s", None, out)
    clock.now = 5.9
    j.advance(out)
    assert out == []  # the body log gets its second to write a late record
    clock.now = 6.1
    j.advance(out)
    assert len(out) == 1 and not out[0].expired


def test_expiry_runs_in_log_time_not_wall_time() -> None:
    """Reading an hour of backlog in a minute must expire nothing that was not incomplete."""
    clock = Clock()
    j, out = Joiner(expire_after_secs=60, clock=clock), []
    j.add_body(data("a", "d", ts=1000.0), "s", out)
    j.access_front.advance(1001.0)
    j.body_front.advance(1001.0)
    clock.now = 10_000.0  # hours of wall time: irrelevant while the logs are being read
    j.expire(out)
    assert out == []
    j.access_front.advance(1059.0)
    j.body_front.advance(1070.0)
    j.expire(out)
    assert out == []  # the access log is not yet 60 s past the request
    j.access_front.advance(1061.0)
    j.expire(out)
    assert [c.request_id for c in out] == ["a"] and out[0].expired and out[0].access is None
    assert j.stats["expired_no_access"] == 1


def test_wall_time_expiry_only_once_both_logs_are_idle() -> None:
    clock = Clock()
    j, out = Joiner(expire_after_secs=10, clock=clock), []
    j.add_body(data("a", "d", ts=1.0), "s", out)
    j.access_front.advance(2.0)
    j.body_front.advance(2.0)
    j.access_front.idle(now=0.0)
    clock.now = 20
    j.expire(out)
    assert out == []  # the body log is still active: its log time rules
    j.body_front.idle(now=20)
    j.expire(out)
    assert [c.request_id for c in out] == ["a"]


def test_an_idle_reader_gets_wall_time_before_the_other_logs_time_expires_a_request() -> None:
    # The access log is caught up (idle), the body reader reads on, far ahead in log time: a
    # body whose access line has not been written yet (a buffered access_log) is not expired by
    # the body's log time alone, only once it has waited expire_after_secs of wall time.
    clock = Clock()
    j, out = Joiner(expire_after_secs=1, clock=clock), []
    j.access_front.advance(5.0)
    j.access_front.idle(now=0.0)
    clock.now = 100.0
    j.add_body(data("late-access", "d", ts=100.0), "s", out)
    j.body_front.advance(130.0)
    clock.now = 100.5
    j.expire(out)
    assert out == []
    j.add_body(end("late-access", ts=100.1), "s", out)
    j.add_access(acc("late-access", t=100.1), "s", None, out)
    assert [(c.request_id, c.expired) for c in out] == [("late-access", False)]
    j.add_body(data("never", "d", ts=101.0), "s", out)
    clock.now = 102.0
    j.expire(out)
    assert [(c.request_id, c.expired) for c in out][1:] == [("never", True)]


def test_record_after_an_incomplete_emission_is_late() -> None:
    j, out = Joiner(), []
    j.add_body(data("a", "d"), "s", out)
    j.flush(out)  # emitted incomplete (no access line)
    j.add_access(acc("a"), "s", None, out)
    assert len(out) == 1 and j.late_records == 1 and len(j) == 0


def test_stray_record_after_a_complete_emission_is_late_not_an_event() -> None:
    j, out = Joiner(), []
    j.add_body(end("a"), "s", out)
    j.add_access(acc("a"), "s", None, out)
    j.add_body(data("a", "late"), "s", out)  # no access line will follow
    j.flush(out)
    assert len(out) == 1 and j.late_records == 1


def test_duplicate_ids_are_two_events_with_their_own_bodies_and_stable_keys() -> None:
    j, out = Joiner(), []
    j.add_body(data("dup1", "first"), "s", out)
    j.add_body(end("dup1"), "s", out)
    j.add_access(acc("dup1", t=10.0), "s", "/a.log", out, offset=0)
    j.add_body(data("dup1", "second", ts=11.0), "s", out)
    j.add_body(end("dup1", ts=12.0), "s", out)
    j.add_access(acc("dup1", t=12.0), "s", "/a.log", out, offset=812)
    assert [c.text() for c in out] == ["first", "second"]
    assert out[0].duplicate_key is None and out[1].duplicate_key == "12.0@812"
    assert j.stats["duplicate_request_id"] == 1 and j.late_records == 0


def test_duplicate_whose_body_starts_before_the_first_access_line() -> None:
    """Body 1 ends, body 2 starts, then access 1, then access 2: each keeps its own body."""
    j, out = Joiner(), []
    j.add_body(data("d", "one"), "s", out)
    j.add_body(end("d"), "s", out)
    j.add_body(data("d", "two", ts=3.0), "s", out)
    j.add_access(acc("d", t=2.0), "s", None, out, offset=0)
    j.add_body(end("d", ts=4.0), "s", out)
    j.add_access(acc("d", t=4.0), "s", None, out, offset=100)
    assert [(c.text(), c.access.time) for c in out] == [("one", 2.0), ("two", 4.0)]
    assert [c.duplicate_key for c in out] == [None, "4.0@100"]


def test_byte_bound_gives_way_with_open_requests_never_complete_ones() -> None:
    j, out = Joiner(max_pending_bytes=20_000), []
    j.add_access(acc("waiting", t=1.0), "s", None, out)  # access seen: never evicted
    for i in range(40):
        j.add_body(data(f"r{i}", "x" * 1000, ts=1.0 + i), "s", out)
    assert j.over_budget()
    j.expire(out)
    assert not j.over_budget()
    assert out and all(c.access is None and c.expired for c in out)
    assert [c.request_id for c in out] == [f"r{i}" for i in range(len(out))]  # oldest first
    assert j.stats["evicted"] == len(out) and "waiting" in j._pending


def test_flush_batches_are_bounded() -> None:
    j = Joiner()
    for i in range(1000):
        j.add_body(data(f"r{i}", "d"), "s", [])
    sizes = [len(b) for b in j.flush_batches(max_items=128)]
    assert sum(sizes) == 1000 and max(sizes) <= 128 and len(j) == 0 and j.pending_bytes == 0


def test_whole_body_record_and_access_only_source() -> None:
    j, out = Joiner(), []
    j.add_body(BodyRecord("a", BODY_WHOLE, 1.0, "{}", "complete", "application/json"), "s", out)
    j.add_access(acc("a"), "s", None, out)
    assert out[0].text() == "{}" and out[0].content_type == "application/json"
    j2, out2 = Joiner(), []
    j2.has_body["s"] = False
    j2.add_access(acc("x"), "s", None, out2)
    assert len(out2) == 1 and out2[0].text() is None


def test_readers_never_both_wait() -> None:
    """may_read: a reader waits only while ahead of an active other reader by more than lead;
    with each frontier set to its next record, the two conditions exclude each other."""
    a, b = Frontier(), Frontier()
    for ta, tb in [(0.0, 10.0), (10.0, 0.0), (5.0, 5.0), (1.0, 3.5), (3.5, 1.0)]:
        a.front = b.front = float("-inf")
        a.advance(ta)
        b.advance(tb)
        assert may_read(a, b, ta, 2.0) or may_read(b, a, tb, 2.0)
    b.idle(now=0.0)
    assert may_read(a, b, 1e9, 2.0)  # the other is caught up: no waiting for it


def test_the_same_access_line_read_twice_is_late_not_a_duplicate() -> None:
    """A rotated file seen again under a second name re-reads lines already joined: same id,
    same time, same byte offset: late records, not second requests."""
    j, out = Joiner(), []
    j.add_body(end("a"), "s", out)
    j.add_access(acc("a", t=5.0), "s", "/l/access.log", out, offset=300)
    j.add_access(acc("a", t=5.0), "s", "/l/access.log.1", out, offset=300)
    j.flush(out)
    assert len(out) == 1 and j.late_records == 1 and j.stats["duplicate_request_id"] == 0


def test_completed_is_built_in_field_order() -> None:
    """`Joiner._complete` builds `Completed` positionally: each value lands in its field
    (a duplicate id, so that the duplicate key is set too; a content type from the headers; a
    body cut at `max_body_bytes`, so that the neighbouring flags differ)."""
    import dataclasses

    assert [f.name for f in dataclasses.fields(Completed)] == [
        "request_id", "source", "access", "body", "end", "content_type", "body_truncated",
        "expired", "first_ts", "last_ts", "source_path", "body_bad_parts", "body_lossy", "parts",
        "prior_text", "prior_extra_tokens", "assemble", "positions", "duplicate_key", "raw_bytes",
    ]  # fmt: skip
    j, out = Joiner(max_body_bytes=12), []
    for rid_time in (2.0, 5.0):  # the second request with id "a" is a duplicate
        j.add_body(data("a", "data: 1\n", ts=rid_time - 1.5), "src", out)
        j.add_body(data("a", "data: 22\n", ts=rid_time - 0.5), "src", out)
        j.add_body(end("a", "complete", ts=rid_time), "src", out)
        rec = AccessRecord("a", time=rid_time, status=200)
        rec.response_headers = {"content-type": "text/event-stream"}
        j.add_access(rec, "src", "/l/access.log", out, offset=77)
    assert len(out) == 2
    c = out[1]
    assert (c.request_id, c.source, c.access, c.body, c.end, c.content_type) == (
        "a", "src", rec, None, "complete", "text/event-stream",
    )  # fmt: skip
    assert (c.body_truncated, c.expired, c.first_ts, c.last_ts, c.source_path) == (
        True, False, 3.5, 5.0, "/l/access.log",
    )  # fmt: skip
    assert (c.body_bad_parts, c.body_lossy, list(c.parts), c.prior_text) == (
        0, False, ["data: 1\n"], [],
    )  # fmt: skip
    assert (c.prior_extra_tokens, c.assemble, c.duplicate_key, c.raw_bytes) == (
        0, j._assemble, "5.0@77", 8,
    )  # fmt: skip
    assert c.text() == "data: 1\n" and out[0].duplicate_key is None


def test_an_access_line_after_its_body_completes_at_once_and_one_first_waits_noted() -> None:
    """Body first (most requests): the access line completes it at once and its bytes leave
    the bound; access first: the request waits, noted with its wall time, log time and cost."""
    clock = Clock()
    j, out = Joiner(clock=clock), []
    j.has_body["s"] = True
    j.add_body(data("a", "data: 1\n\n", ts=1.0), "s", out)
    j.add_body(end("a", ts=1.5), "s", out)
    j.add_access(acc("a", t=2.0), "s", "/l/access.log", out, offset=0)
    assert [(c.request_id, c.text(), c.last_ts, c.source_path) for c in out] == [
        ("a", "data: 1\n\n", 1.5, "/l/access.log")
    ]
    assert len(j) == 0 and j.pending_bytes == 0
    clock.now = 7.0
    j.add_body(data("b", "x", ts=2.5), "s", out)
    j.add_access(acc("b", t=3.0), "s", None, out, offset=10)
    p = j._pending["b"]
    assert (p.touched, p.seen, len(out)) == (7.0, 3.0, 1)
    assert j.pending_bytes == p.cost > 0

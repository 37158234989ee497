"""The low-watermark ledger and the checkpoint file (pure logic and a real file)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sidecar.sources import checkpoint
from sidecar.sources.checkpoint import FileEntry
from sidecar.sources.ledger import Ledger
from sidecar.types import Positions

K = "proxy/access|1:2:ab:10"
B = "proxy/body|1:3:cd:10"


def held(led: Ledger, key: str, offset: int, *rids: str) -> list[Positions]:
    """Requests `rids` fed from the batch of `key` at `offset`, held as the pipeline does."""
    out = [Positions(rid, {key: offset}) for rid in rids]
    led.hold_all(key, out)
    return out


def test_committed_offset_is_the_lowest_position_still_held() -> None:
    led = Ledger()
    [r1] = held(led, K, 0, "r1")  # r1 waits in the join since the batch at 0
    led.processed(K, 100)
    [r2] = held(led, K, 100, "r2")
    led.processed(K, 200)
    assert led.commit_info(K) == (0, 200, ["r1", "r2"])
    led.release(r1)
    assert led.commit_info(K) == (100, 200, ["r2"])
    led.release(r2)
    assert led.commit_info(K) == (200, 200, [])  # nothing outstanding: no replay ids saved
    assert led.outstanding() == 0


def test_one_request_across_two_files_holds_both() -> None:
    led = Ledger()
    [r] = held(led, B, 50, "r")
    led.processed(B, 80)
    r.at[K] = 10  # its access line, in a batch of the other file
    led.hold_all(K, [r])
    led.processed(K, 20)
    assert led.commit_info(B)[0] == 50 and led.commit_info(K)[0] == 10  # type: ignore[index]
    assert led.outstanding() == 2
    led.release(r)
    assert led.commit_info(B)[0] == 80 and led.commit_info(K)[0] == 20  # type: ignore[index]


def test_two_requests_at_one_offset_hold_it_until_both_are_released() -> None:
    led = Ledger()
    a, _ = held(led, K, 5, "a", "b")
    led.processed(K, 9)
    led.release(a)
    assert led.commit_info(K) == (5, 9, ["b"])


def test_two_requests_with_one_id_hold_until_both_are_released() -> None:
    led = Ledger()
    first, second = held(led, K, 5, "a", "a")
    led.processed(K, 9)
    assert led.outstanding() == 2
    led.release(first)
    led.release(first)  # again: a no-op, never the other request's hold
    led.release(Positions("a", {K: 5}))  # equal, but not a held request
    assert led.commit_info(K) == (5, 9, ["a"])
    led.release(second)
    assert led.commit_info(K) == (9, 9, [])


def test_releasing_a_batch_at_once_is_releasing_each_of_its_requests() -> None:
    one, each = Ledger(), Ledger()
    events = {}
    for led in (one, each):
        a1, b = held(led, K, 5, "a", "b")
        held(led, K, 9, "a")  # `a` twice: two requests with one id
        b.at[B] = 7
        led.hold_all(B, [b])
        led.hold_all(B, [])
        led.processed(K, 20)
        led.processed(B, 20)
        events[led] = [a1, None, b]  # None: an event that holds nothing
        assert led.commit_info(K) == (5, 20, ["a", "b"])
        assert led.commit_info(B) == (7, 20, ["b"])
    one.release_all(events[one])
    for pos in events[each]:
        each.release(pos)
    for led in (one, each):
        assert led.commit_info(K) == (9, 20, ["a"])  # the second `a` still held
        assert led.commit_info(B) == (20, 20, [])
        assert led.outstanding() == 1


def test_replay_below_the_saved_read_offset_feeds_only_replay_ids() -> None:
    led = Ledger()
    led.restore(K, 10, 100, ["a", "b"])
    assert led.replaying(K, 10) == {"a", "b"}
    assert led.replaying(K, 100) is None  # new data: feed everything
    [a] = held(led, K, 10, "a")  # `a` is rebuilt from the replay ...
    led.release_all([a])  # ... and its event becomes durable
    assert led.replaying(K, 50) == {"b"}  # a crash now must not feed half of `a` again
    x, r, ids = led.commit_info(K)  # type: ignore[misc]
    assert (x, r, ids) == (10, 100, ["b"])
    led.processed(K, 100)
    assert led.replaying(K, 60) is None
    assert led.commit_info(K) == (100, 100, [])


def test_a_durable_request_leaves_only_its_own_files_replay_ids() -> None:
    led = Ledger()
    led.restore(K, 10, 100, ["a"])
    led.restore(B, 10, 100, ["a"])  # another request `a` is replayed from the body file
    [a] = held(led, K, 10, "a")
    led.release_all([a])
    assert led.replaying(K, 50) == set() and led.replaying(B, 50) == {"a"}


def test_checkpoint_round_trip_atomic_and_private(tmp_path: Path) -> None:
    path = str(tmp_path / "state" / "checkpoints.json")
    e = FileEntry("/var/log/a.log", 1, 2, "ab", 10, 5, 9, ["x"], 1.0)
    checkpoint.save(path, {"proxy/access": {e.key: e}})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not os.path.exists(path + ".tmp")
    assert checkpoint.load(path) == {"proxy/access": {e.key: e}}
    assert checkpoint.expired(e, now=100.0, max_age_secs=50)
    assert not checkpoint.expired(e, now=10.0, max_age_secs=50)


def test_unusable_checkpoint_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    path.write_bytes(b'{"version": 99, "tailers": {}}')
    assert checkpoint.load(str(path)) == {}
    assert (tmp_path / "checkpoints.json.bad").exists() and not path.exists()
    path.write_bytes(b"{not json")
    assert checkpoint.load(str(path)) == {}
    assert checkpoint.load(str(tmp_path / "none.json")) == {}

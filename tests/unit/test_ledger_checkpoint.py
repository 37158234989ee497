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


def test_committed_offset_is_the_lowest_position_still_held() -> None:
    led = Ledger()
    led.hold(K, 0, "r1")  # r1 waits in the join since the batch at 0
    led.processed(K, 100)
    led.hold(K, 100, "r2")
    led.processed(K, 200)
    assert led.commit_info(K) == (0, 200, ["r1", "r2"])
    led.release(Positions("r1", {K: 0}))
    assert led.commit_info(K) == (100, 200, ["r2"])
    led.release(Positions("r2", {K: 100}))
    assert led.commit_info(K) == (200, 200, [])  # nothing outstanding: no replay ids saved
    assert led.outstanding() == 0


def test_one_request_across_two_files_holds_both() -> None:
    led = Ledger()
    led.hold(B, 50, "r")
    led.processed(B, 80)
    led.hold(K, 10, "r")
    led.processed(K, 20)
    assert led.commit_info(B)[0] == 50 and led.commit_info(K)[0] == 10
    led.release(Positions("r", {B: 50, K: 10}))
    assert led.commit_info(B)[0] == 80 and led.commit_info(K)[0] == 20


def test_the_same_offset_held_twice_is_a_multiset() -> None:
    led = Ledger()
    led.hold(K, 5, "a")
    led.hold(K, 5, "b")
    led.processed(K, 9)
    led.release(Positions("a", {K: 5}))
    assert led.commit_info(K) == (5, 9, ["b"])


def test_holding_a_batch_at_once_is_holding_each_of_its_requests() -> None:
    one, each = Ledger(), Ledger()
    one.hold_all(K, 5, ["a", "b", "a"])  # `a` twice: two requests with one id
    one.hold_all(K, 9, [])
    one.hold_all(B, 7, ["b"])
    for key, offset, rid in ((K, 5, "a"), (K, 5, "b"), (K, 5, "a"), (B, 7, "b")):
        each.hold(key, offset, rid)
    for led in (one, each):
        led.processed(K, 20)
        led.processed(B, 20)
    assert one.commit_info(K) == each.commit_info(K) == (5, 20, ["a", "b"])
    assert one.commit_info(B) == each.commit_info(B) == (7, 20, ["b"])
    for led in (one, each):
        led.release(Positions("a", {K: 5}))
        led.release(Positions("b", {K: 5, B: 7}))
    assert one.commit_info(K) == each.commit_info(K) == (5, 20, ["a"])  # one `a` still held
    assert one.outstanding() == each.outstanding() == 1


def test_replay_below_the_saved_read_offset_feeds_only_replay_ids() -> None:
    led = Ledger()
    led.restore(K, 10, 100, ["a", "b"])
    assert led.replaying(K, 10) == {"a", "b"}
    assert led.replaying(K, 100) is None  # new data: feed everything
    led.hold(K, 10, "a")  # `a` is rebuilt from the replay ...
    led.release(Positions("a", {K: 10}))  # ... and its event becomes durable
    assert led.replaying(K, 50) == {"b"}  # a crash now must not feed half of `a` again
    x, r, ids = led.commit_info(K)  # type: ignore[misc]
    assert (x, r, ids) == (10, 100, ["b"])
    led.processed(K, 100)
    assert led.replaying(K, 60) is None
    assert led.commit_info(K) == (100, 100, [])


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

"""`validate`: every numeric option has a range, secrets are stripped, plain-http HEC endpoints
are refused unless allowed; each message names the key, the problem and the fix."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from sidecar import config as C
from sidecar.errors import ConfigError
from sidecar.pipeline import Pipeline

SRC = {"name": "p", "access_log": {"paths": ["a.log"]}, "body_log": {"paths": ["b.log"]}}


def hec(**kw: object) -> dict:
    return {"type": "hec", "endpoints": ["https://splunk:8088"], "token": "t", **kw}


def cfg(**kw: object) -> C.Config:
    return C.from_dict({"sources": [SRC], **kw})


# (config fragment builder, key path, a value below the range, a value above it)
CASES = [
    (lambda v: {"sources": [{**SRC, "read_chunk_bytes": v}]}, "sources[0].read_chunk_bytes", 0),
    (
        lambda v: {"sources": [{**SRC, "access_read_chunk_bytes": v}]},
        "sources[0].access_read_chunk_bytes",
        4095,
    ),
    (lambda v: {"sources": [{**SRC, "poll_interval_secs": v}]}, "sources[0].poll_interval_secs", 0),
    (
        lambda v: {"sources": [{**SRC, "body_log": {"paths": ["b"], "max_body_bytes": v}}]},
        "sources[0].body_log.max_body_bytes",
        -1,
    ),
    (lambda v: {"join": {"expire_after_secs": v}}, "join.expire_after_secs", 0),
    (lambda v: {"join": {"max_pending_requests": v}}, "join.max_pending_requests", 0),
    (lambda v: {"tokens": {"calibration_sample_every": v}}, "tokens.calibration_sample_every", 0),
    (lambda v: {"sinks": [hec(batch={"max_bytes": v})]}, "sinks[0].batch.max_bytes", 0),
    (lambda v: {"sinks": [hec(batch={"max_events": v})]}, "sinks[0].batch.max_events", 0),
    (lambda v: {"sinks": [hec(batch={"timeout_secs": v})]}, "sinks[0].batch.timeout_secs", 0),
    (
        lambda v: {"sinks": [hec(acknowledgements={"query_interval_secs": v})]},
        "sinks[0].acknowledgements.query_interval_secs",
        0,
    ),
    (
        lambda v: {"sinks": [hec(acknowledgements={"retry_limit": v})]},
        "sinks[0].acknowledgements.retry_limit",
        0,
    ),
    (
        lambda v: {"sinks": [hec(retry={"initial_backoff_secs": v})]},
        "sinks[0].retry.initial_backoff_secs",
        0,
    ),
    (
        lambda v: {"sinks": [hec(retry={"max_backoff_secs": v})]},
        "sinks[0].retry.max_backoff_secs",
        0,
    ),
    (lambda v: {"sinks": [hec(retry={"max_attempts": v})]}, "sinks[0].retry.max_attempts", -1),
    (lambda v: {"sinks": [hec(request_timeout_secs=v)]}, "sinks[0].request_timeout_secs", 0),
    (lambda v: {"sinks": [hec(compression_level=v)]}, "sinks[0].compression_level", 0),
]


def build(fragment: dict) -> C.Config:
    data = {"sources": [SRC], **fragment}
    return C.from_dict(data)


@pytest.mark.parametrize(("make", "key", "low"), CASES, ids=[c[1] for c in CASES])
def test_each_numeric_option_is_range_checked(make, key: str, low: float) -> None:
    default = _default(key)
    with pytest.raises(ConfigError) as err:
        build(make(low))
    assert err.value.key == key
    assert err.value.problem == f"{type(default)(low)!r} is out of range"
    assert err.value.fix.startswith("use a value from ")
    with pytest.raises(ConfigError, match="out of range"):
        build(make(10**12))
    if isinstance(default, float):
        with pytest.raises(ConfigError, match="nan is out of range"):
            build(make(float("nan")))
    build(make(default))  # the default is in range


def _default(key: str) -> object:
    cls_path = {
        "sources[0]": C.Source,
        "sources[0].body_log": C.BodyLog,
        "join": C.Join,
        "tokens": C.Tokens,
        "sinks[0]": C.HecSink,
        "sinks[0].batch": C.Batch,
        "sinks[0].acknowledgements": C.Acknowledgements,
        "sinks[0].retry": C.Retry,
    }
    owner, name = key.rsplit(".", 1)
    return {f.name: f.default for f in dataclasses.fields(cls_path[owner])}[name]


def _numeric_fields(cls: type, seen: set[type]) -> list[str]:
    out: list[str] = []
    if cls in seen:
        return out
    seen.add(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if tp in (int, float) and not f.metadata.get("internal"):
            out.append(f"{cls.__name__}.{f.name}" + ("" if "range" in f.metadata else " (none)"))
        for arg in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(arg):
                out += _numeric_fields(arg, seen)
    return out


def test_every_numeric_option_declares_a_range() -> None:
    missing = [f for f in _numeric_fields(C.Config, set()) if f.endswith("(none)")]
    assert missing == []


def test_secrets_are_stripped_of_surrounding_whitespace() -> None:
    c = cfg(sinks=[hec(token="tok-123\n")], identity={"hash_key": "  key\n"})
    assert c.sinks[0].token == "tok-123" and c.identity.hash_key == "key"
    with pytest.raises(ConfigError, match="token is empty"):
        cfg(sinks=[hec(token="\n")])


def test_plain_http_endpoint_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError) as err:
        cfg(sinks=[hec(endpoints=["http://splunk.example.com:8088"])])
    assert err.value.key == "sinks[0].endpoints[0]"
    assert "clear text" in err.value.problem
    assert "allow_insecure_http: true" in err.value.fix
    c = cfg(sinks=[hec(endpoints=["http://splunk.example.com:8088"], allow_insecure_http=True)])
    assert c.sinks[0].allow_insecure_http
    cfg(sinks=[hec(endpoints=["http://127.0.0.1:8088", "http://localhost:8088"])])  # loopback


def test_generic_mapping_names_are_checked() -> None:
    src = {**SRC, "access_log": {"paths": ["a"], "format": {"type": "generic"}}}
    src["access_log"]["format"]["fields"] = {"request_id": "id", "duration_sec": "took"}
    with pytest.raises(ConfigError) as err:
        C.from_dict({"sources": [src]})
    assert err.value.key == "sources[0].access_log.format.fields.duration_sec"
    assert err.value.fix == "did you mean duration_secs?"


def test_read_sizes_default_to_4_mib_for_the_body_log_and_1_mib_for_the_access_log(
    tmp_path: Path,
) -> None:
    """The body log is read in 4 MiB blocks (fewer reads, scanned as read), the access log in
    1 MiB (its lines are cut and held while they wait: docs/performance.md, "Tuning"); each
    tailer gets its own size, and the limits of the range are accepted."""
    src = {**SRC, "access_log": {"paths": [str(tmp_path / "a.log")]}}
    src["body_log"] = {"paths": [str(tmp_path / "b.log")]}
    base = {"state_dir": str(tmp_path / "st"), "identity": {"hash_key": "k"}}
    base["sinks"] = [{"type": "file", "path": str(tmp_path / "e.ndjson")}]
    cfg = C.from_dict({"sources": [src], **base})
    assert (cfg.sources[0].read_chunk_bytes, cfg.sources[0].access_read_chunk_bytes) == (
        4 << 20,
        1 << 20,
    )
    for body, access in ((4 << 20, 1 << 20), (4096, 1 << 26)):
        s = {**src, "read_chunk_bytes": body, "access_read_chunk_bytes": access}
        runtime = Pipeline(C.from_dict({"sources": [s], **base}), once=True).sources[0]
        assert runtime.body_tail is not None
        assert runtime.body_tail.read_chunk_bytes == body
        assert runtime.access_tail.read_chunk_bytes == access

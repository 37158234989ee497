"""The typed configuration root.

One dataclass per component; every option is documented where it is declared (the comment after
the field) and again in the shipped `config.yaml`, which is the annotated reference. Names carry
their units (`timeout_secs`, `max_bytes`). Alternatives are picked by a `type` key.

`load(path)` reads YAML, substitutes `${ENV_VAR}` (and `${ENV_VAR:-default}`), then builds the
dataclasses with `sidecar.configload.build`, which rejects unknown keys with their path and a
suggestion, and names the expected type when a value has the wrong one. `validate()` checks what
types cannot say (cross-field rules). Nothing here touches the network or the files being tailed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sidecar.configload import build, substitute_env
from sidecar.errors import ConfigError

# The canonical names a `generic` mapping may use (DESIGN.md section 3), plus two that say a
# unit or where the request headers are: `duration_secs` (a duration in seconds instead of
# `duration_ms`) and `request_headers` (the request-header map, searched for an API key).
GENERIC_FIELDS = (
    "time",
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "duration_secs",
    "ttft_ms",
    "upstream_host",
    "stream",
    "model",
    "user",
    "tenant",
    "api_key",
    "conversation_id",
    "client_request_id",
    "attempt",
    "request_completion",
    "response_body",
    "usage",
    "request_body",
    "request_headers",
)


@dataclass
class AccessFormat:
    type: Literal["nginx_json", "caddy", "generic"] = "nginx_json"
    fields: dict[str, str] = field(default_factory=dict)  # generic: canonical name -> dotted path
    headers_path: str | None = None  # generic: dotted path of the response-header map


@dataclass
class AccessLog:
    paths: list[str] = field(default_factory=list)  # files or globs
    format: AccessFormat = field(default_factory=AccessFormat)


@dataclass
class BodyFormat:
    type: Literal["chunks", "bodies"] = "chunks"


@dataclass
class BodyLog:
    paths: list[str] = field(default_factory=list)
    format: BodyFormat = field(default_factory=BodyFormat)
    # cap for a non-stream body and for a stream's estimation text (its usage is never cut)
    max_body_bytes: int = field(default=8 * 1024 * 1024, metadata={"range": (1024, 1 << 30)})


@dataclass
class Source:
    name: str = "proxy"  # part of every event_id: keep it stable
    access_log: AccessLog = field(default_factory=AccessLog)
    body_log: BodyLog | None = None
    provider: Literal["auto", "openai", "azure", "anthropic", "gemini", "vertex", "other"] = "auto"
    start_at: Literal["beginning", "end"] = "beginning"  # for files seen for the first time
    # bytes per read of the body log (its block is scanned as read, held until scanned)
    read_chunk_bytes: int = field(default=4 << 20, metadata={"range": (4096, 1 << 26)})
    # bytes per read of the access log: its lines are cut from the block and held while they
    # wait for the body log; a few reads per 1,000 requests, so larger gains nothing
    access_read_chunk_bytes: int = field(default=1 << 20, metadata={"range": (4096, 1 << 26)})
    # how often to look for new data when following
    poll_interval_secs: float = field(default=0.25, metadata={"range": (0.01, 60.0)})
    # issue 8: a rotated-away file is read until it has had no new data for this long
    rotate_wait_secs: float = field(default=5.0, metadata={"range": (0.0, 3600.0)})
    # a longer line is skipped up to its newline (never held in memory), counted, set aside
    max_line_bytes: int = field(default=8 * 1024 * 1024, metadata={"range": (1024, 1 << 30)})


@dataclass
class Join:
    # a request with one side missing is emitted once both logs are this far past it (log time;
    # wall time only when both logs are caught up and idle)
    expire_after_secs: float = field(default=60.0, metadata={"range": (1.0, 86_400.0)})
    # beyond it the oldest open requests without an access record are emitted early (counted)
    max_pending_requests: int = field(default=100_000, metadata={"range": (1, 10_000_000)})
    # memory bound of the join (raw and packed body parts, decoded text, per-request overhead);
    # near it the largest open streams are packed (lossless zlib, join/storage.py), then
    # compacted, and beyond it the oldest open requests without an access record are emitted
    # early (counted, warned)
    max_pending_bytes: int = field(default=64 << 20, metadata={"range": (1 << 20, 1 << 40)})
    # clock skew allowed between the two logs: a request whose access line is seen is complete
    # once the body log is this far past the access line's time (or caught up this long)
    skew_secs: float = field(default=1.0, metadata={"range": (0.0, 60.0)})


@dataclass
class Checkpoint:
    """Tail checkpoints (`state_dir/checkpoints.json`): where each file resumes after a restart."""

    # written soon after events become durable, at most this often (and at shutdown): a crash
    # re-sends what became durable since the last write (same event_id, same content)
    interval_secs: float = field(default=0.2, metadata={"range": (0.01, 60.0)})
    # entries of files not seen (matched or open) for this long are dropped
    expire_after_secs: float = field(default=86400.0, metadata={"range": (60.0, 31536000.0)})


@dataclass
class Tokens:
    estimate_missing: bool = True  # count tokens with tiktoken when a stream has no usage
    encodings_dir: str | None = None  # offline tiktoken files; null = the bundled ones
    calibrate: bool = True  # learn per-model output/visible-text ratios from complete streams
    # after warm-up, sample 1 complete stream in N per model
    calibration_sample_every: int = field(default=100, metadata={"range": (1, 1_000_000)})


@dataclass
class Identity:
    # keyed HMAC key for user/api_key hashing (set it from an env var); surrounding whitespace
    # (a trailing newline from a secrets file) is stripped
    hash_key: str = field(default="", metadata={"secret": True})
    hash_fields: list[Literal["api_key", "user", "tenant", "conversation_id"]] = field(
        default_factory=lambda: ["api_key", "user"]
    )


@dataclass
class PriceOverride:
    model: str = ""  # model name as served (after aliases), e.g. my-llama-70b
    provider: str | None = None  # restrict to one provider; null = any
    effective_from: str | None = None  # ISO date; the override applies from then on
    input_usd_per_mtok: str | None = None  # decimal strings keep money exact
    cached_input_usd_per_mtok: str | None = None
    cache_write_usd_per_mtok: str | None = None
    output_usd_per_mtok: str | None = None
    discount_pct: str | None = None  # a negotiated discount off the catalogue price
    free: bool = False  # a free / self-hosted model: priced at 0, cost_known true


@dataclass
class Pricing:
    aliases: dict[str, str] = field(default_factory=dict)  # e.g. my-gpt4o-deployment: gpt-4o
    overrides: list[PriceOverride] = field(default_factory=list)
    overrides_file: str | None = None  # YAML list of overrides, reloaded on SIGHUP


@dataclass
class Batch:
    # uncompressed bytes per HEC request
    max_bytes: int = field(default=1_000_000, metadata={"range": (1024, 1 << 30)})
    max_events: int = field(default=1000, metadata={"range": (1, 100_000)})
    # send a partial batch after this long
    timeout_secs: float = field(default=1.0, metadata={"range": (0.001, 3600.0)})


@dataclass
class Acknowledgements:
    enabled: bool = False  # indexer acknowledgement (needs useACK on the token)
    query_interval_secs: float = field(default=10.0, metadata={"range": (0.1, 3600.0)})
    retry_limit: int = field(default=30, metadata={"range": (1, 100_000)})
    # Sends of a batch whose ackId never turns true, after the first (each one counted); then
    # the batch goes to the dead-letter file. Copies per event stay within 1 + max_resends.
    max_resends: int = field(default=2, metadata={"range": (0, 100)})


@dataclass
class Tls:
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None  # client certificate (PEM) for mutual TLS
    key_file: str | None = None  # its private key; null = inside cert_file


@dataclass
class Retry:
    initial_backoff_secs: float = field(default=1.0, metadata={"range": (0.001, 3600.0)})
    max_backoff_secs: float = field(default=30.0, metadata={"range": (0.001, 86_400.0)})
    # 0 = retry retryable errors forever (nothing is dropped)
    max_attempts: int = field(default=0, metadata={"range": (0, 1_000_000)})


@dataclass
class HecSink:
    type: Literal["hec"] = "hec"
    endpoints: list[str] = field(default_factory=list)  # https://splunk.example.com:8088
    # the HEC token; set it from an env var: ${SPLUNK_HEC_TOKEN} (surrounding whitespace, such
    # as a trailing newline from a secrets file, is stripped)
    token: str = field(default="", metadata={"secret": True})
    index: str | None = None
    sourcetype: str = "llm:usage"
    source: str | None = None  # default: the access log path
    host: str | None = None  # default: this machine's hostname
    path: str = "/services/collector/event"
    batch: Batch = field(default_factory=Batch)
    compression: Literal["gzip", "none"] = "gzip"
    # gzip level: 3 compresses large-mode events about 8.7x at twice the speed of level 6
    # (11x); 1 is the fastest (7.5x), 9 the smallest (docs/performance.md, "HEC")
    compression_level: int = field(default=3, metadata={"range": (1, 9)})
    acknowledgements: Acknowledgements = field(default_factory=Acknowledgements)
    tls: Tls = field(default_factory=Tls)
    retry: Retry = field(default_factory=Retry)
    request_timeout_secs: float = field(default=30.0, metadata={"range": (0.1, 3600.0)})
    # An event whose envelope is larger goes to the dead-letter file (Splunk's maxEventSize).
    max_event_bytes: int = field(default=5 * 1024 * 1024, metadata={"range": (1024, 1 << 30)})
    # http:// endpoints send the token in clear text: refused unless this is true (loopback
    # addresses, 127.0.0.1 / ::1 / localhost, are allowed without it)
    allow_insecure_http: bool = False


@dataclass
class FileSink:
    type: Literal["file"] = "file"
    path: str = "out/events.ndjson"
    envelope: bool = False  # true: write the HEC envelope, false: the bare event


SinkConfig = HecSink | FileSink


@dataclass
class Server:
    """The /health and /metrics HTTP server (follow mode only; not started by `run --once`)."""

    enabled: bool = True  # false: no HTTP server at all
    listen: str = "127.0.0.1:9178"  # host:port; keep it on loopback unless a scraper needs it
    lag_threshold_secs: float = field(
        default=300.0, metadata={"range": (1.0, 86400.0)}
    )  # /health is 503 when a source is further behind than this
    spool_threshold_pct: int = field(
        default=80, metadata={"range": (1, 100)}
    )  # /health is 503 when the spool is fuller than this
    max_label_values: int = field(
        default=200, metadata={"range": (1, 100_000)}
    )  # distinct (provider, model, ...) series per metric; the rest are counted as `other`


@dataclass
class Heartbeat:
    """`llm:sidecar` heartbeat events, sent through the sinks so Splunk can alert on silence."""

    enabled: bool = True
    interval_secs: float = field(default=60.0, metadata={"range": (1.0, 3600.0)})


@dataclass
class Log:
    """The sidecar's own log lines (stderr; journald adds the time and the unit name)."""

    format: Literal["logfmt", "json", "text"] = "logfmt"  # one line per message
    level: Literal["debug", "info", "warning", "error"] = "info"  # re-read on SIGHUP
    rate_limit_secs: float = field(
        default=60.0, metadata={"range": (0.0, 86400.0)}
    )  # a message repeated within this window is counted, not printed again (0 = off)


@dataclass
class Spool:
    """The durable queue between enrichment and the sinks, in `state_dir/spool`."""

    max_bytes: int = field(default=1 << 30, metadata={"range": (1 << 20, 1 << 40)})
    segment_bytes: int = field(default=16 << 20, metadata={"range": (1 << 16, 1 << 30)})
    # fsync once per batch, at most this often (ms); batches meanwhile share the next fsync.
    fsync_interval_ms: int = field(default=50, metadata={"range": (0, 10_000)})
    # the sinks' delivered position is saved at most this often (ms): a crash re-sends what was
    # delivered since (same event_id, same content)
    cursor_interval_ms: int = field(default=200, metadata={"range": (0, 60_000)})


@dataclass
class Config:
    sources: list[Source] = field(default_factory=list)
    join: Join = field(default_factory=Join)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    tokens: Tokens = field(default_factory=Tokens)
    identity: Identity = field(default_factory=Identity)
    pricing: Pricing = field(default_factory=Pricing)
    state_dir: str = ".sidecar-state"  # hash key, set-aside records, dead letters, checkpoints
    sinks: list[SinkConfig] = field(default_factory=lambda: [FileSink()])
    server: Server = field(default_factory=Server)  # /health and /metrics
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    log: Log = field(default_factory=Log)
    spool: Spool = field(default_factory=Spool)
    # SIGTERM: deliver for up to this long, leave the rest in the spool, exit 0. `run --once`:
    # give up when nothing was delivered for this long, exit 3 (events wait in the spool).
    shutdown_timeout_secs: float = field(default=20.0, metadata={"range": (1.0, 3600.0)})
    base_dir: str = field(default=".", metadata={"internal": True})  # relative paths resolve here

    def resolve(self, path: str) -> str:
        """A config-relative path made absolute (relative to the config file's folder)."""
        p = Path(path)
        return str(p if p.is_absolute() else Path(self.base_dir) / p)


def validate(cfg: Config) -> None:
    """Cross-field rules the types cannot express. Raises ConfigError naming the key."""
    if not cfg.sources:
        raise ConfigError("sources", "at least one source is required", "add a `sources:` entry")
    names: set[str] = set()
    for i, src in enumerate(cfg.sources):
        if src.name in names:
            raise ConfigError(
                f"sources[{i}].name", f"duplicate source name {src.name!r}", "names must be unique"
            )
        names.add(src.name)
        if not src.access_log.paths:
            raise ConfigError(
                f"sources[{i}].access_log.paths", "no access log path", "list at least one path"
            )
        fmt = src.access_log.format
        if fmt.type == "generic" and "request_id" not in fmt.fields:
            raise ConfigError(
                f"sources[{i}].access_log.format.fields",
                "the generic format needs a mapping for request_id",
                "add `request_id: <dotted.path>`",
            )
        for name in fmt.fields:
            if name not in GENERIC_FIELDS:
                guess = difflib.get_close_matches(name, GENERIC_FIELDS, n=1)
                raise ConfigError(
                    f"sources[{i}].access_log.format.fields.{name}",
                    "not a canonical field name",
                    f"did you mean {guess[0]}?"
                    if guess
                    else f"use one of: {', '.join(GENERIC_FIELDS)}",
                )
    if not cfg.sinks:
        raise ConfigError("sinks", "at least one sink is required", "add a `type: file` sink")
    for i, sink in enumerate(cfg.sinks):
        if isinstance(sink, HecSink):
            if not sink.endpoints:
                raise ConfigError(
                    f"sinks[{i}].endpoints", "no HEC endpoint", "add https://host:8088"
                )
            for j, ep in enumerate(sink.endpoints):
                if not ep.startswith(("http://", "https://")):
                    raise ConfigError(
                        f"sinks[{i}].endpoints[{j}]",
                        f"{ep!r} is not an http(s) URL",
                        "write it as https://host:8088",
                    )
                if not plain_http_allowed(sink, ep):
                    raise ConfigError(
                        f"sinks[{i}].endpoints[{j}]",
                        f"{ep} is plain http: the HEC token would travel in clear text",
                        "use https://, or set allow_insecure_http: true on this sink if the "
                        "network is trusted",
                    )
            if not sink.token:
                raise ConfigError(
                    f"sinks[{i}].token",
                    "the HEC token is empty",
                    "set it with token: ${SPLUNK_HEC_TOKEN} and export that variable",
                )
            if sink.batch.max_events < 1 or sink.batch.max_bytes < 1:
                raise ConfigError(f"sinks[{i}].batch", "batch limits must be positive", "use >= 1")
    if cfg.server.enabled:
        listen_address(cfg.server.listen)
    if cfg.join.expire_after_secs <= 0:
        raise ConfigError("join.expire_after_secs", "must be positive", "use e.g. 60")
    if cfg.join.max_pending_requests < 1:
        raise ConfigError("join.max_pending_requests", "must be at least 1", "use e.g. 100000")


def listen_address(listen: str, key: str = "server.listen") -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9178`) -> (host, port); ConfigError naming `key` if not."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"{listen!r} is not host:port", "write e.g. 127.0.0.1:9178")
    return host, int(port)


def plain_http_allowed(sink: HecSink, url: str) -> bool:
    """Whether `url` may be used: https always; http:// only when `allow_insecure_http` is set,
    or on a loopback address (127.0.0.0/8, ::1, localhost), where the token never travels."""
    if not url.startswith("http://") or sink.allow_insecure_http:
        return True
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def from_dict(data: Any, *, env: dict[str, str] | None = None, base_dir: str = ".") -> Config:
    data = substitute_env(data, env)
    cfg = build(Config, data, "")
    cfg.base_dir = base_dir
    validate(cfg)
    return cfg


def load(path: str | Path, *, env: dict[str, str] | None = None) -> Config:
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {p}: {exc.strerror}", "check the -c path") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{p} is not valid YAML{where}", "fix the syntax") from exc
    return from_dict(data, env=env, base_dir=str(p.resolve().parent))

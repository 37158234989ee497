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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sidecar.configload import build, substitute_env
from sidecar.errors import ConfigError


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
    max_body_bytes: int = 8 * 1024 * 1024  # cap: non-stream body, stream estimation text


@dataclass
class Source:
    name: str = "proxy"  # part of every event_id: keep it stable
    access_log: AccessLog = field(default_factory=AccessLog)
    body_log: BodyLog | None = None
    provider: Literal["auto", "openai", "azure", "anthropic", "gemini", "vertex", "other"] = "auto"
    start_at: Literal["beginning", "end"] = "beginning"  # for files seen for the first time
    read_chunk_bytes: int = 1024 * 1024  # bytes read per read() call
    poll_interval_secs: float = 0.25  # how often to look for new data when following


@dataclass
class Join:
    # a request with one side missing is emitted once both logs are this far past it (log time;
    # wall time only when both logs are caught up and idle)
    expire_after_secs: float = 60.0
    # beyond it the oldest open requests without an access record are emitted early (counted)
    max_pending_requests: int = 100_000
    # memory bound of the join (raw body parts, decoded text, per-request overhead); beyond it
    # open streams are compacted sooner, then the oldest open requests without an access record
    # are emitted early (counted, warned)
    max_pending_bytes: int = field(default=64 << 20, metadata={"range": (1 << 20, 1 << 40)})
    # clock skew allowed between the two logs: a request whose access line is seen is complete
    # once the body log is this far past the access line's time (or caught up this long)
    skew_secs: float = field(default=1.0, metadata={"range": (0.0, 60.0)})


@dataclass
class Tokens:
    estimate_missing: bool = True  # count tokens with tiktoken when a stream has no usage
    encodings_dir: str | None = None  # offline tiktoken files; null = the bundled ones
    calibrate: bool = True  # learn per-model output/visible-text ratios from complete streams
    calibration_sample_every: int = 100  # after warm-up, sample 1 complete stream in N per model


@dataclass
class Identity:
    hash_key: str = ""  # keyed HMAC key for user/api_key hashing (set it from an env var)
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
    max_bytes: int = 1_000_000  # uncompressed bytes per HEC request
    max_events: int = 1000
    timeout_secs: float = 1.0  # send a partial batch after this long


@dataclass
class Acknowledgements:
    enabled: bool = False  # indexer acknowledgement (needs useACK on the token)
    query_interval_secs: float = 10.0
    retry_limit: int = 30


@dataclass
class Tls:
    verify: bool = True
    ca_file: str | None = None


@dataclass
class Retry:
    initial_backoff_secs: float = 1.0
    max_backoff_secs: float = 30.0
    max_attempts: int = 0  # 0 = retry retryable errors forever (nothing is dropped)


@dataclass
class HecSink:
    type: Literal["hec"] = "hec"
    endpoints: list[str] = field(default_factory=list)  # https://splunk.example.com:8088
    token: str = ""  # the HEC token; set it from an env var: ${SPLUNK_HEC_TOKEN}
    index: str | None = None
    sourcetype: str = "llm:usage"
    source: str | None = None  # default: the access log path
    host: str | None = None  # default: this machine's hostname
    path: str = "/services/collector/event"
    batch: Batch = field(default_factory=Batch)
    compression: Literal["gzip", "none"] = "gzip"
    acknowledgements: Acknowledgements = field(default_factory=Acknowledgements)
    tls: Tls = field(default_factory=Tls)
    retry: Retry = field(default_factory=Retry)
    request_timeout_secs: float = 30.0


@dataclass
class FileSink:
    type: Literal["file"] = "file"
    path: str = "out/events.ndjson"
    envelope: bool = False  # true: write the HEC envelope, false: the bare event


SinkConfig = HecSink | FileSink


@dataclass
class Config:
    sources: list[Source] = field(default_factory=list)
    join: Join = field(default_factory=Join)
    tokens: Tokens = field(default_factory=Tokens)
    identity: Identity = field(default_factory=Identity)
    pricing: Pricing = field(default_factory=Pricing)
    state_dir: str = ".sidecar-state"  # hash key, set-aside records, dead letters
    sinks: list[SinkConfig] = field(default_factory=lambda: [FileSink()])
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
            if not sink.token:
                raise ConfigError(
                    f"sinks[{i}].token",
                    "the HEC token is empty",
                    "set it with token: ${SPLUNK_HEC_TOKEN} and export that variable",
                )
            if sink.batch.max_events < 1 or sink.batch.max_bytes < 1:
                raise ConfigError(f"sinks[{i}].batch", "batch limits must be positive", "use >= 1")
    if cfg.join.expire_after_secs <= 0:
        raise ConfigError("join.expire_after_secs", "must be positive", "use e.g. 60")
    if cfg.join.max_pending_requests < 1:
        raise ConfigError("join.max_pending_requests", "must be at least 1", "use e.g. 100000")


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

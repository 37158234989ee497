"""The sidecar's own log lines: structured, one line per message, repeats rate-limited, no secret.

    log.format: logfmt (default)  level=warning logger=sidecar.sinks.hec msg="HEC at ... failed"
                json              {"level":"warning","logger":"...","msg":"..."}
                text              2026-01-01 12:00:00,000 WARNING sidecar.sinks.hec: HEC at ...

Under systemd (`JOURNAL_STREAM` set) journald stamps each line with the time and the unit, so
the line carries none and starts with the syslog priority (`<4>`), which journald turns into the
entry's PRIORITY (SyslogLevelPrefix=, on by default). A message repeated within
`log.rate_limit_secs` (same logger, same template) is counted, not printed; the next one printed
says how many were held back (`repeats_suppressed=N`). Every configured secret (HEC tokens, the
identity hash key) is replaced by `[redacted]` in any line, tracebacks included.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
_HANDLER_NAME = "sidecar-stderr"


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' ="\\\n\r\t'):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


class StructuredFormatter(logging.Formatter):
    def __init__(self, fmt: str, *, journald: bool, secrets: list[str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.kind = fmt
        self.journald = journald
        self.secrets = [s for s in secrets if len(s) >= 4]

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelname, 6)}>" if self.journald else ""
        if self.kind == "text":
            line = self._redact(super().format(record))
            return prefix + line
        fields: dict[str, Any] = {}
        if not self.journald:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            fields["time"] = f"{stamp}.{int(record.msecs):03d}Z"
        fields["level"] = record.levelname.lower()
        fields["logger"] = record.name
        fields["msg"] = self._redact(record.getMessage())
        repeats = getattr(record, "repeats_suppressed", 0)
        if repeats:
            fields["repeats_suppressed"] = repeats
        if record.exc_info:
            fields["exc"] = self._redact(self.formatException(record.exc_info))
        if self.kind == "json":
            return prefix + orjson.dumps(fields).decode()
        return prefix + " ".join(f"{k}={_logfmt_value(str(v))}" for k, v in fields.items())


class RateLimit(logging.Filter):
    """Let the first of a repeated message through, count the rest for `window_secs`."""

    def __init__(self, window_secs: float) -> None:
        super().__init__()
        self.window_secs = window_secs
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [last shown, held]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.window_secs <= 0:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window_secs:
            if entry is not None and entry[1]:
                record.repeats_suppressed = int(entry[1])
            self._seen[key] = [now, 0]
            if len(self._seen) > 10_000:  # bounded: forget the oldest templates
                for k in list(self._seen)[:5_000]:
                    del self._seen[k]
            return True
        entry[1] += 1
        return False


def configure(
    fmt: str = "logfmt",
    level: str = "info",
    *,
    rate_limit_secs: float = 60.0,
    secrets: list[str] | None = None,
    verbose: bool = False,
) -> None:
    """(Re)install the one stderr handler on the root logger."""
    root = logging.getLogger()
    for h in list(root.handlers):
        # Ours, or basicConfig's plain stderr handler (not a test harness' capture handler).
        if h.get_name() == _HANDLER_NAME or type(h) is logging.StreamHandler:
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        StructuredFormatter(fmt, journald=stderr_is_journal(), secrets=secrets or [])
    )
    handler.addFilter(RateLimit(rate_limit_secs))
    root.addHandler(handler)
    set_level("debug" if verbose else level)


def stderr_is_journal() -> bool:
    """True when stderr is the journal stream systemd connected (`JOURNAL_STREAM=dev:ino`)."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return dev.isdigit() and ino.isdigit() and (st.st_dev, st.st_ino) == (int(dev), int(ino))


def configure_from(cfg: Any, *, verbose: bool = False) -> None:
    """`configure` with the config's `log` section and its secrets."""
    lg = cfg.log
    configure(
        lg.format,
        lg.level,
        rate_limit_secs=lg.rate_limit_secs,
        secrets=secrets_of(cfg),
        verbose=verbose,
    )


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())


def reload_level(config_path: str, *, verbose: bool = False) -> None:
    """SIGHUP: apply `log.level` from the config file again (a broken file keeps the old one)."""
    from sidecar import config
    from sidecar.errors import ConfigError

    log = logging.getLogger("sidecar.logsetup")
    try:
        level = "debug" if verbose else config.load(config_path).log.level
    except ConfigError as exc:
        log.warning("SIGHUP: log level kept, %s does not load: %s", config_path, exc)
        return
    log.info("SIGHUP: log level %s.", level)  # said before a higher level would hide it
    set_level(level)


def secrets_of(cfg: Any) -> list[str]:
    """The values never to print: HEC tokens and the identity hash key."""
    out = [getattr(s, "token", "") for s in cfg.sinks]
    out.append(cfg.identity.hash_key)
    return [s for s in out if s]

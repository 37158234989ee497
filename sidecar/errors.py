"""The exception tree.

SidecarError
├── ConfigError      a config key is wrong: names the key, the problem and the fix
├── ParseError       one input record cannot be understood (counted, set aside, never fatal)
└── SinkError        a sink cannot deliver
    ├── RetryableSinkError   network errors, 5xx, 408, 429, HEC codes 8/9/18-20: try again
    └── PermanentSinkError   other 4xx: it can never succeed (dead-letter it)
"""

from __future__ import annotations


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose."""


class ConfigError(SidecarError):
    def __init__(self, key: str, problem: str, fix: str = "") -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        where = f"{key}: " if key else ""
        hint = f"; {fix}" if fix else ""
        super().__init__(f"{where}{problem}{hint}")


class ParseError(SidecarError):
    """One record could not be parsed; `reason` is a short stable label used in counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SinkError(SidecarError):
    pass


class RetryableSinkError(SinkError):
    def __init__(self, message: str, retry_after_secs: float | None = None) -> None:
        self.retry_after_secs = retry_after_secs
        super().__init__(message)


class PermanentSinkError(SinkError):
    pass

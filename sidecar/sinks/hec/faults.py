"""Configuration faults of one HEC sink: health reasons and one clear error a minute.

A configuration fault (a refused token, a redirect, a wrong path: see `replies.py`) keeps every
event in the spool; the sink retries with backoff and resumes by itself when the fault is cured.
Meanwhile the fault is a health reason (contract 2) and is logged as an error at most once a
minute per endpoint, with the fix.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("sidecar.sinks.hec")

LOG_EVERY_SECS = 60.0


class FaultBoard:
    def __init__(self) -> None:
        self._active: dict[str, str] = {}
        self._logged: dict[str, float] = {}
        self.count = 0

    def report(self, endpoint: str, reason: str, hint: str, *, token: bool = False) -> None:
        what = "rejects the token" if token else "refuses the events"
        text = f"HEC at {endpoint} {what} ({reason}): {hint}"
        self._active[endpoint] = text
        self.count += 1
        now = time.monotonic()
        if now - self._logged.get(endpoint, -LOG_EVERY_SECS) >= LOG_EVERY_SECS:
            self._logged[endpoint] = now
            log.error(
                "%s. Every event stays in the spool and is sent once this is fixed (retrying "
                "on its own; this error repeats once a minute).",
                text,
            )

    def clear(self, endpoint: str) -> None:
        if self._active.pop(endpoint, None) is not None:
            self._logged.pop(endpoint, None)
            log.warning("HEC at %s accepts events again; delivery resumes.", endpoint)

    def reasons(self) -> list[str]:
        return list(self._active.values())

"""Start-up checks for `run`: each problem becomes one sentence naming the path and the fix,
and a non-zero exit, never a traceback.

- the state directory (hash key, set-aside records, dead letters) must be writable;
- every file sink's path must be writable;
- `run --once` must find at least one file for every configured log (a typo in a glob would
  otherwise read nothing and exit 0).
"""

from __future__ import annotations

import glob
import os

from sidecar import config as C
from sidecar.errors import ConfigError


def _writable_dir(path: str, key: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            key,
            f"cannot create {path} ({exc.strerror})",
            "create it, make it writable by the sidecar's user, or point the key elsewhere",
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(
            key,
            f"{path} is not writable by this user",
            "make it writable by the sidecar's user (systemd: StateDirectory=) or point the key "
            "at a folder it owns",
        )


def _writable_file(path: str, key: str) -> None:
    parent = os.path.dirname(path) or "."
    _writable_dir(parent, key)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(
            key,
            f"{path} is not writable by this user",
            "fix its owner or mode, or point the key at another file",
        )


def _matches(cfg: C.Config, patterns: list[str]) -> bool:
    return any(glob.glob(cfg.resolve(p)) for p in patterns)


def check(cfg: C.Config, *, once: bool) -> None:
    """Raise ConfigError naming the key, the path and the fix for the first problem found."""
    _writable_dir(cfg.resolve(cfg.state_dir), "state_dir")
    for i, sink in enumerate(cfg.sinks):
        if isinstance(sink, C.FileSink):
            _writable_file(cfg.resolve(sink.path), f"sinks[{i}].path")
    if not once:
        return
    for i, src in enumerate(cfg.sources):
        logs = [("access_log", src.access_log)]
        if src.body_log is not None:
            logs.append(("body_log", src.body_log))
        for name, lg in logs:
            if not _matches(cfg, lg.paths):
                shown = ", ".join(cfg.resolve(p) for p in lg.paths)
                raise ConfigError(
                    f"sources[{i}].{name}.paths",
                    f"run --once found no file matching {shown}",
                    "check the paths (relative ones are relative to the config file's folder)",
                )

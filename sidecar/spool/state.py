"""The spool's small state files: the readers' cursors and the quarantine copies."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import orjson

from sidecar.statefile import write_atomic


def load_cursors(path: str) -> dict[str, int]:
    """Each reader's low watermark; {} when there is no file yet. Raises on a damaged file."""
    try:
        with open(path, "rb") as fh:
            data: Any = orjson.loads(fh.read())
    except FileNotFoundError:
        return {}
    return {str(k): int(v) for k, v in data.get("readers", {}).items()}


def save_cursors(path: str, watermarks: dict[str, int]) -> None:
    """tmp + fsync + rename (0600), with a version."""
    write_atomic(path, orjson.dumps({"version": 1, "readers": watermarks}))


def quarantine_copy(directory: str, path: str, damage: str, lost_bytes: int) -> str:
    """Copy a damaged segment byte for byte into `directory/quarantine` (0600); returns the
    report."""
    qdir = os.path.join(directory, "quarantine")
    os.makedirs(qdir, mode=0o700, exist_ok=True)
    dest = os.path.join(qdir, f"{os.path.basename(path)}.{int(time.time())}")
    shutil.copyfile(path, dest)
    os.chmod(dest, 0o600)
    return (
        f"spool segment {os.path.basename(path)} is damaged ({damage}); {lost_bytes} byte(s) "
        f"after it cannot be read; a copy is in {dest}"
    )

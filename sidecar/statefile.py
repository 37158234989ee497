"""The sidecar's own small state files (checkpoints, spool cursors, the generated hash key):
private (0600) and replaced atomically (tmp + fsync + rename + fsync of the folder), so a crash
leaves either the old file or the new one, never a mix."""

from __future__ import annotations

import os


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older tmp file may have other bits
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)

"""After a restart: find the files that were rotated away while the sidecar was down.

Two cases, both only in the folders of the configured paths:
- a checkpointed file that the patterns no longer match was renamed (logrotate's
  `access.log` -> `access.log.1`): it is found by its inode (and device) and read from its
  checkpoint to its end;
- a file that came to a plain configured path and was renamed away before we saw it (rotation
  faster than a restart, or while the reader was held back) was never read: a sibling named
  `<path>.<suffix>`, `<path>-<suffix>` or `<path>_<suffix>` with an unknown identity, modified
  no earlier than the newest file we knew at that path, is read from its start. (Rotated files
  are written one after the other, so everything after the last file we knew is newer.)
  Compressed names are never read.

Nothing is found on a first start (no checkpoint): `start_at` applies then.
"""

from __future__ import annotations

import glob
import os
import stat

from sidecar.sources.checkpoint import FileEntry
from sidecar.sources.fingerprint import is_compressed


def rotated_while_down(
    patterns: list[str], known: dict[str, FileEntry], matched: set[tuple[int, int]]
) -> list[str]:
    """The paths of files to read to their end (from their checkpoint or start), oldest first."""
    if not known:
        return []
    found: dict[tuple[int, int], tuple[float, str]] = {}
    by_inode = {(e.dev, e.ino): e for e in known.values()}
    folders = {os.path.dirname(e.path) or "." for e in known.values()}
    plain = [p for p in patterns if not glob.has_magic(p)]
    folders |= {os.path.dirname(p) or "." for p in plain}
    listings: list[tuple[os.DirEntry[str], os.stat_result]] = []
    for folder in folders:
        try:
            listing = list(os.scandir(folder))
        except OSError:
            continue
        for de in listing:
            try:
                listings.append((de, de.stat()))
            except OSError:
                continue
    since = _newest_known(plain, known, listings)
    for de, st in listings:
        if is_compressed(de.name):
            continue
        did = (st.st_dev, st.st_ino)
        if did in matched or did in found or not stat.S_ISREG(st.st_mode):
            continue
        entry = by_inode.get(did)
        if entry is not None:
            if st.st_size > entry.offset:
                found[did] = (st.st_mtime, de.path)
        elif _sibling(de.path, plain, since, st.st_mtime):
            found[did] = (st.st_mtime, de.path)
    return [path for _, path in sorted(found.values())]


def _newest_known(
    plain: list[str],
    known: dict[str, FileEntry],
    listings: list[tuple[os.DirEntry[str], os.stat_result]],
) -> dict[str, float]:
    """Per plain path: the modification time of the newest file we knew at that path."""
    mtimes = {(st.st_dev, st.st_ino): st.st_mtime for _, st in listings}
    out: dict[str, float] = {}
    for p in plain:
        entries = [e for e in known.values() if e.path == p]
        if not entries:
            continue
        on_disk = [mtimes[(e.dev, e.ino)] for e in entries if (e.dev, e.ino) in mtimes]
        out[p] = max(on_disk) if on_disk else max(e.seen for e in entries) - 1.0
    return out


def _sibling(path: str, plain: list[str], since: dict[str, float], mtime: float) -> bool:
    for p in plain:
        if path.startswith(p) and len(path) > len(p) and path[len(p)] in ".-_":
            return p in since and mtime >= since[p]
    return False

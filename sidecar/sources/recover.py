"""Find files that were rotated away before the tailer read them.

Two cases, both only in the folders of the configured paths:
- after a restart, a checkpointed file that the patterns no longer match was renamed
  (logrotate's `access.log` -> `access.log.1`): it is found by its inode (and device) and read
  from its checkpoint to its end (`rotated_while_down`);
- a file that came to a path the patterns match (a plain path, or a name a glob matched) and
  was renamed away before we saw it (rotation faster than a restart, or than a scan while the
  reader was held back) was never read: a sibling named `<path>.<suffix>`, `<path>-<suffix>`
  or `<path>_<suffix>` with an unknown identity, modified no earlier than the oldest file we
  still remember at that path, is read from its start. Rotated files are written one after
  the other, so a file newer than one we knew was either known too or missed; files older
  than all we remember were there before us. The tailer looks for these at a restart and
  whenever a matched path names a new file (`missed_siblings`). Compressed names are never
  read.

Nothing is found on a first start (no checkpoint): `start_at` applies then.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Iterable

from sidecar.sources.checkpoint import FileEntry
from sidecar.sources.fingerprint import is_compressed, same_fingerprint

_Listing = list[tuple[os.DirEntry[str], os.stat_result]]
_Found = dict[tuple[int, int], tuple[float, str]]  # (dev, ino) -> (mtime, path)


def rotated_while_down(
    patterns: list[str], known: dict[str, FileEntry], matched: set[tuple[int, int]]
) -> list[str]:
    """At a restart: the paths of files to read to their end (from their checkpoint or
    start), oldest first. `matched`: the files the patterns match (opened anyway)."""
    if not known:
        return []
    bases = _bases(patterns, known)
    listing = _list({os.path.dirname(e.path) or "." for e in known.values()} | _folders(bases))
    which = _recognise(listing, known)
    found: _Found = {}
    for de, st in listing:
        did = (st.st_dev, st.st_ino)
        entry = which.get(did)
        if entry is not None and did not in matched and st.st_size > entry.offset:
            found[did] = (st.st_mtime, de.path)
    found.update(_missed(bases, known, which, matched | set(found), listing))
    return _oldest_first(found)


def missed_siblings(
    paths: list[str], known: dict[str, FileEntry], open_files: set[tuple[int, int]]
) -> list[str]:
    """While following, after matched `paths` came to name new files: the siblings rotated
    away unread since the last scan, oldest first. `open_files`: the files the tailer has
    open."""
    listing = _list(_folders(paths))
    return _oldest_first(_missed(paths, known, _recognise(listing, known), open_files, listing))


def _bases(patterns: list[str], known: dict[str, FileEntry]) -> list[str]:
    """The paths whose siblings may be missed files: the plain patterns, and the paths of
    remembered files that a glob matched."""
    globs = [p for p in patterns if glob.has_magic(p)]
    bases = {p for p in patterns if not glob.has_magic(p)}
    bases |= {e.path for e in known.values() if any(fnmatch.fnmatch(e.path, g) for g in globs)}
    return sorted(bases)


def _recognise(listing: _Listing, known: dict[str, FileEntry]) -> dict[tuple[int, int], FileEntry]:
    """The listed files we remember: same device and inode AND the same first line (an inode
    freed by deleting an old rotated file is soon reused by a new file, often the next one at
    the path). A file that cannot be opened counts as the one remembered (as before)."""
    by_inode: dict[tuple[int, int], list[FileEntry]] = {}
    for e in known.values():
        by_inode.setdefault((e.dev, e.ino), []).append(e)
    out: dict[tuple[int, int], FileEntry] = {}
    for de, st in listing:
        did = (st.st_dev, st.st_ino)
        entries = by_inode.get(did)
        if not entries or not stat.S_ISREG(st.st_mode) or is_compressed(de.name):
            continue
        try:
            fd = os.open(de.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            out[did] = entries[0]
            continue
        try:
            same = [e for e in entries if same_fingerprint(fd, e.fp, e.fp_len)]
        except OSError:
            same = entries[:1]
        finally:
            os.close(fd)
        if same:
            out[did] = same[0]
    return out


def _missed(
    bases: list[str],
    known: dict[str, FileEntry],
    which: dict[tuple[int, int], FileEntry],
    skip: set[tuple[int, int]],
    listing: _Listing,
) -> _Found:
    since = _oldest_known(bases, known, which, listing)
    found: _Found = {}
    for de, st in listing:
        did = (st.st_dev, st.st_ino)
        if did in skip or did in which or did in found or is_compressed(de.name):
            continue
        if stat.S_ISREG(st.st_mode) and _sibling(de.path, since, st.st_mtime):
            found[did] = (st.st_mtime, de.path)
    return found


def _oldest_known(
    bases: list[str],
    known: dict[str, FileEntry],
    which: dict[tuple[int, int], FileEntry],
    listing: _Listing,
) -> dict[str, float]:
    """Per path: the modification time of the oldest remembered file on disk that was read at
    that path (a file rotated away keeps that path in its entry), or, when all of them are
    gone, a second before the oldest was last seen; paths without any are left out (nothing
    of theirs can have been missed)."""
    on_disk: dict[str, float] = {}
    for _, st in listing:
        e = which.get((st.st_dev, st.st_ino))
        if e is not None and e.path in bases:
            on_disk[e.path] = min(on_disk.get(e.path, st.st_mtime), st.st_mtime)
    gone: dict[str, float] = {}
    for e in known.values():
        if e.path in bases and e.path not in on_disk:
            gone[e.path] = min(gone.get(e.path, e.seen), e.seen - 1.0)
    return on_disk | gone


def _sibling(path: str, since: dict[str, float], mtime: float) -> bool:
    return any(
        path.startswith(p) and len(path) > len(p) and path[len(p)] in ".-_" and mtime >= t
        for p, t in since.items()
    )


def _folders(paths: Iterable[str]) -> set[str]:
    return {os.path.dirname(p) or "." for p in paths}


def _list(folders: Iterable[str]) -> _Listing:
    listing: _Listing = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for de in entries:
            try:
                listing.append((de, de.stat()))
            except OSError:
                continue
    return listing


def _oldest_first(found: _Found) -> list[str]:
    return [path for _, path in sorted(found.values())]

"""Find files that were rotated away before the tailer read them (all of them).

Only in the folders of the configured paths; compressed names are never read. Three cases:
- **renamed** (logrotate's `access.log` -> `access.log.1`) while the sidecar was down: a file
  we remember is found by its device, inode AND first line (an inode freed by deleting an old
  rotated file is soon reused by a new one) and read from its checkpoint to its end;
- **missed**: a file came to a path the patterns match (a plain path, or a name a glob
  matched) and was renamed away before a scan saw it (rotation faster than a restart, or than
  a scan while the reader was held back). A sibling named `<path>.<suffix>`, `<path>-<suffix>`
  or `<path>_<suffix>`, unknown, modified no earlier than the oldest file we remember at that
  path, is read from its start. Rotated files are written one after the other, so a file newer
  than one we knew was either known too or missed; files older than all we remember were there
  before us. A sibling that starts with the first line of a file we remember is a copy, not a
  missed file (`cp access.log access.log.bak` is not read again);
- **copied, then truncated** (copytruncate): the lines written between our last read and the
  cut are only in the copy, a sibling starting with the truncated file's first line: it is read
  from the offset we had reached (`copies_of`; at a restart, for remembered files whose inode
  is gone or starts with another line now).

The tailer looks at a restart (`rotated_while_down`), whenever a matched path names a new file
(`missed_siblings`) and when a file was truncated (`copies_of`). Nothing is found on a first
start (no checkpoint): `start_at` applies then.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.sources.checkpoint import FileEntry
from sidecar.sources.fingerprint import fingerprint, is_compressed

_Id = tuple[int, int]  # (dev, ino)


@dataclass(frozen=True, slots=True)
class Found:
    path: str
    mtime: float
    copy_of: FileEntry | None = None  # a copy: resume at this entry's offset


@dataclass(slots=True)
class _Folder:
    """The files of the folders looked at, with what we know of each."""

    files: list[tuple[str, os.stat_result]]
    known: dict[_Id, FileEntry]  # the listed files we remember (inode and first line)
    fps: set[tuple[str, int]]  # the first lines of every file we remember


def rotated_while_down(
    patterns: list[str], known: dict[str, FileEntry], matched: set[_Id]
) -> list[Found]:
    """At a restart: the files to read to their end, oldest first. `matched`: the files the
    patterns match (opened anyway)."""
    if not known:
        return []
    bases = _bases(patterns, known)
    d = _look(_folders([e.path for e in known.values()] + bases), known)
    found: dict[_Id, Found] = {}
    for path, st in d.files:
        did = (st.st_dev, st.st_ino)
        entry = d.known.get(did)
        if entry is not None and did not in matched and st.st_size > entry.offset:
            found[did] = Found(path, st.st_mtime)
    gone = [e for e in known.values() if d.known.get((e.dev, e.ino)) is not e]
    for e in gone:  # truncated (or deleted): a copy holds what came after our offset
        for did, path, mtime in _copies(d, e.path, (e.fp, e.fp_len), matched):
            found.setdefault(did, Found(path, mtime, copy_of=e))
    found.update(_missed(bases, known, d, matched | set(found)))
    return _oldest_first(found)


def missed_siblings(
    paths: list[str], known: dict[str, FileEntry], open_files: set[_Id]
) -> list[Found]:
    """While following, after matched `paths` came to name new files: the siblings rotated
    away unread since the last scan, oldest first."""
    return _oldest_first(_missed(paths, known, _look(_folders(paths), known), open_files))


def copies_of(
    path: str, fp: str, fp_len: int, known: dict[str, FileEntry], open_files: set[_Id]
) -> list[Found]:
    """After `path` was truncated: its copies (siblings starting with the line `fp` names)."""
    d = _look(_folders([path]), known)
    copies = _copies(d, path, (fp, fp_len), open_files)
    return _oldest_first({did: Found(p, mtime) for did, p, mtime in copies})


def _copies(
    d: _Folder, base: str, fp: tuple[str, int], skip: set[_Id]
) -> Iterable[tuple[_Id, str, float]]:
    for path, st in d.files:
        did = (st.st_dev, st.st_ino)
        if did in skip or did in d.known or not _named_after(path, base):
            continue
        if _fingerprint(path) == fp:
            yield did, path, st.st_mtime


def _missed(
    bases: list[str], known: dict[str, FileEntry], d: _Folder, skip: set[_Id]
) -> dict[_Id, Found]:
    since = _oldest_known(bases, known, d)
    found: dict[_Id, Found] = {}
    for path, st in d.files:
        did = (st.st_dev, st.st_ino)
        if did in skip or did in d.known:
            continue
        newer = any(_named_after(path, p) and st.st_mtime >= t for p, t in since.items())
        if newer and _fingerprint(path) not in d.fps:  # a copy of a file we read is not missed
            found[did] = Found(path, st.st_mtime)
    return found


def _oldest_known(bases: list[str], known: dict[str, FileEntry], d: _Folder) -> dict[str, float]:
    """Per path: the modification time of the oldest remembered file on disk that was read at
    that path (a file rotated away keeps that path in its entry), or, when all of them are
    gone, a second before the oldest was last seen; paths without any are left out (nothing
    of theirs can have been missed)."""
    on_disk: dict[str, float] = {}
    for _, st in d.files:
        e = d.known.get((st.st_dev, st.st_ino))
        if e is not None and e.path in bases:
            on_disk[e.path] = min(on_disk.get(e.path, st.st_mtime), st.st_mtime)
    gone: dict[str, float] = {}
    for e in known.values():
        if e.path in bases and e.path not in on_disk:
            gone[e.path] = min(gone.get(e.path, e.seen), e.seen - 1.0)
    return on_disk | gone


def _bases(patterns: list[str], known: dict[str, FileEntry]) -> list[str]:
    """The paths whose siblings may be missed files: the plain patterns, and the paths of
    remembered files that a glob matched."""
    globs = [p for p in patterns if glob.has_magic(p)]
    bases = {p for p in patterns if not glob.has_magic(p)}
    bases |= {e.path for e in known.values() if any(fnmatch.fnmatch(e.path, g) for g in globs)}
    return sorted(bases)


def _look(folders: Iterable[str], known: dict[str, FileEntry]) -> _Folder:
    """List the regular, uncompressed files of `folders`; recognise those we remember."""
    files: list[tuple[str, os.stat_result]] = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for de in entries:
            try:
                st = de.stat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and not is_compressed(de.name):
                files.append((de.path, st))
    by_inode: dict[_Id, list[FileEntry]] = {}
    for e in known.values():
        by_inode.setdefault((e.dev, e.ino), []).append(e)
    recognised: dict[_Id, FileEntry] = {}
    for path, st in files:
        did = (st.st_dev, st.st_ino)
        entries = by_inode.get(did)
        if entries:
            fp = _fingerprint(path)
            same = [e for e in entries if (e.fp, e.fp_len) == fp]
            if fp is None or same:  # unreadable: taken for the one remembered
                recognised[did] = same[0] if same else entries[0]
    return _Folder(files, recognised, {(e.fp, e.fp_len) for e in known.values()})


def _named_after(path: str, base: str) -> bool:
    """`base.<suffix>`, `base-<suffix>` or `base_<suffix>`: what rotation names a file."""
    return path.startswith(base) and path[len(base) : len(base) + 1] in (".", "-", "_")


def _fingerprint(path: str) -> tuple[str, int] | None:
    """The file's first-line fingerprint; None when it cannot be read or is not whole yet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return fingerprint(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def _folders(paths: Iterable[str]) -> set[str]:
    return {os.path.dirname(p) or "." for p in paths}


def _oldest_first(found: dict[_Id, Found]) -> list[Found]:
    return sorted(found.values(), key=lambda f: (f.mtime, f.path))

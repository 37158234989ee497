"""Find files that were rotated away before the tailer read them (all of them).

Only in the folders of the configured paths; compressed names are never read. Three cases:
- **renamed** (logrotate's `access.log` -> `access.log.1`) while the sidecar was down: a file
  we remember is found by its device, inode AND first line (an inode freed by deleting an old
  rotated file is soon reused by a new one) and read from its checkpoint to its end;
- **missed**: a file came to a path the patterns match (a plain path, or a name a glob
  matched) and was renamed away before a scan saw it (rotation faster than a restart, or than
  a scan while the reader was held back). A sibling named `<path>.<n…>`, `<path>-<n…>` or
  `<path>_<n…>` (a number or a date after the separator: `access.log-json` is another live
  log, `access.log.bak` not a rotated one), unknown, modified no earlier than the oldest file
  we remember at that path, is read from its start. Rotated files are written one after the
  other, so a file newer than one we knew was either known too or missed; files older than all
  we remember were there before us. A sibling that starts with the first line of a file we
  remember is a copy, not a missed file (`cp access.log access.log-20261127` is not read
  again);
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
from dataclasses import dataclass, field

from sidecar.sources.checkpoint import FileEntry
from sidecar.sources.fingerprint import fingerprint, is_compressed

_Id = tuple[int, int]  # (dev, ino)
_Head = tuple[str, int] | None  # a first-line fingerprint; None: the first line is not whole
UNREADABLE = ("", -1)  # the head of a file that cannot be opened (matches no fingerprint)


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
    heads: dict[str, _Head] = field(default_factory=dict)  # path -> its head, read once

    def head(self, path: str) -> _Head:
        if path not in self.heads:
            self.heads[path] = _fingerprint(path)
        return self.heads[path]


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
    for e in gone:  # truncated (or deleted): its copy holds what came after our offset
        copy = _copy(d, e.path, (e.fp, e.fp_len), matched)
        if copy is not None:
            found.setdefault(copy[0], Found(copy[1], copy[2], copy_of=e))
    found.update(_missed(bases, known, d, matched | set(found)))
    return _oldest_first(found)


def missed_siblings(
    paths: list[str], known: dict[str, FileEntry], open_files: set[_Id]
) -> list[Found]:
    """While following, after matched `paths` came to name new files: the siblings rotated
    away unread since the last scan, oldest first."""
    d = _look(_folders(paths), known, paths)
    return _oldest_first(_missed(paths, known, d, open_files))


def copies_of(
    path: str, fp: str, fp_len: int, known: dict[str, FileEntry], open_files: set[_Id]
) -> list[Found]:
    """After `path` was truncated: its copy (the newest sibling starting with the line `fp`
    names; an older one, e.g. a `cp` made earlier, holds only lines read already)."""
    copy = _copy(_look(_folders([path]), known, [path]), path, (fp, fp_len), open_files)
    return [] if copy is None else [Found(copy[1], copy[2])]


def _copy(
    d: _Folder, base: str, fp: tuple[str, int], skip: set[_Id]
) -> tuple[_Id, str, float] | None:
    copies = [
        (st.st_mtime, (st.st_dev, st.st_ino), path)
        for path, st in d.files
        if (st.st_dev, st.st_ino) not in skip
        and (st.st_dev, st.st_ino) not in d.known
        and _named_after(path, base)
        and d.head(path) == fp
    ]
    if not copies:
        return None
    mtime, did, path = max(copies)
    return did, path, mtime


def _missed(
    bases: list[str], known: dict[str, FileEntry], d: _Folder, skip: set[_Id]
) -> dict[_Id, Found]:
    since = _oldest_known(bases, known, d)
    found: dict[_Id, Found] = {}
    for path, st in d.files:
        did = (st.st_dev, st.st_ino)
        if did in skip or did in d.known:
            continue
        if not any(_named_after(path, p) and st.st_mtime >= t for p, t in since.items()):
            continue
        head = d.head(path)
        # not whole yet (an empty rotated log), unreadable, or a copy of a file we read: skip
        if head is not None and head != UNREADABLE and head not in d.fps:
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


def _look(
    folders: Iterable[str], known: dict[str, FileEntry], bases: list[str] | None = None
) -> _Folder:
    """List the regular, uncompressed files of `folders` (only `bases` and their siblings when
    given: a big folder is not stat'ed whole at each rotation); recognise those we remember."""
    files: list[tuple[str, os.stat_result]] = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for de in entries:
            if bases is not None and not any(
                de.path == b or _named_after(de.path, b) for b in bases
            ):
                continue
            try:
                st = de.stat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and not is_compressed(de.name):
                files.append((de.path, st))
    by_inode: dict[_Id, list[FileEntry]] = {}
    for e in known.values():
        by_inode.setdefault((e.dev, e.ino), []).append(e)
    d = _Folder(files, {}, {(e.fp, e.fp_len) for e in known.values()})
    for path, st in files:
        did = (st.st_dev, st.st_ino)
        entries = by_inode.get(did)
        if entries:
            head = d.head(path)
            same = [e for e in entries if (e.fp, e.fp_len) == head]
            if same or head == UNREADABLE:  # unreadable: taken for the one remembered
                d.known[did] = same[0] if same else entries[0]
    return d


def _named_after(path: str, base: str) -> bool:
    """`base.<n…>`, `base-<n…>` or `base_<n…>` (a number or a date): what rotation names a
    file; `access.log-json`, another live log beside it, is not one."""
    n = len(base)
    return (
        path.startswith(base)
        and path[n : n + 1] in (".", "-", "_")
        and path[n + 1 : n + 2].isdigit()
    )


def _fingerprint(path: str) -> _Head:
    """The file's first-line fingerprint; None when its first line is not whole yet,
    UNREADABLE when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return UNREADABLE
    try:
        return fingerprint(fd)
    except OSError:
        return UNREADABLE
    finally:
        os.close(fd)


def _folders(paths: Iterable[str]) -> set[str]:
    return {os.path.dirname(p) or "." for p in paths}


def _oldest_first(found: dict[_Id, Found]) -> list[Found]:
    return sorted(found.values(), key=lambda f: (f.mtime, f.path))

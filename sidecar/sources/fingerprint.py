"""File identity: device + inode, and a fingerprint of the file's first bytes.

A path says nothing about which file it names from one moment to the next (rotation renames,
recreates and truncates), so a tailed file is known by `(dev, ino)` plus a hash of its first line
(at most `FP_MAX_BYTES`). The same inode with another first line is another file: it was
truncated (copytruncate) or the inode number was reused after a delete. The fingerprint is only
defined once the first line is complete (or `FP_MAX_BYTES` long); before that the file has no
whole line to read anyway.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

FP_MAX_BYTES = 1024
COMPRESSED_SUFFIXES = (".gz", ".zst", ".bz2", ".xz", ".zip", ".lz4")


@dataclass(frozen=True, slots=True)
class Identity:
    dev: int
    ino: int
    fp: str  # hex digest of the first `fp_len` bytes
    fp_len: int

    @property
    def key(self) -> str:
        """The identity as a string (checkpoint key, position key)."""
        return f"{self.dev}:{self.ino}:{self.fp}:{self.fp_len}"


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def fingerprint(fd: int) -> tuple[str, int] | None:
    """(digest, length) of the file's first line up to FP_MAX_BYTES, or None if not yet whole."""
    head = os.pread(fd, FP_MAX_BYTES, 0)
    nl = head.find(b"\n")
    if nl >= 0:
        head = head[: nl + 1]
    elif len(head) < FP_MAX_BYTES:
        return None
    return _digest(head), len(head)


def same_fingerprint(fd: int, fp: str, fp_len: int) -> bool:
    """Whether the file open at `fd` still starts with the bytes fingerprinted as `fp`."""
    head = os.pread(fd, fp_len, 0)
    return len(head) == fp_len and _digest(head) == fp


def identify(fd: int) -> Identity | None:
    """The identity of the open file, or None while its first line is incomplete."""
    st = os.fstat(fd)
    got = fingerprint(fd)
    if got is None:
        return None
    return Identity(st.st_dev, st.st_ino, got[0], got[1])


def is_compressed(path: str) -> bool:
    """Rotated, compressed files (access.log.1.gz) are never tailed."""
    return path.endswith(COMPRESSED_SUFFIXES)

"""Checkpoints: where each tailed file was committed, saved so a restart resumes there.

One JSON file (`state_dir/checkpoints.json`, mode 0600) holds every tailer's files, so that the
offsets of an access log and of its body log are always from the same moment:

    {"version": 1,
     "tailers": {"proxy/access": {"<dev>:<ino>:<fp>:<fp_len>": {
         "path": "/var/log/llm/access.log", "dev": 2049, "ino": 131, "fp": "9f..", "fp_len": 212,
         "offset": 81920,          # X, the low watermark: resume reading here
         "read_offset": 90112,     # R, read up to here before the checkpoint was written
         "replay_ids": ["4f1c.."], # requests with lines in [X, R) not yet durably handed on
         "seen": 1767225600.0}}}}  # wall time the file was last seen (entries expire)

It is written tmp + fsync + rename (+ fsync of the folder), so a crash leaves the old or the new
file, never half of one. A file with another `version` or that cannot be parsed is renamed
aside (`.bad`) with a warning and the sources start as if for the first time.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field

import orjson

from sidecar.statefile import write_atomic

log = logging.getLogger("sidecar.sources.checkpoint")

VERSION = 1


@dataclass(slots=True)
class FileEntry:
    path: str
    dev: int
    ino: int
    fp: str
    fp_len: int
    offset: int = 0  # committed offset X (resume here)
    read_offset: int = 0  # R: bytes below it were read before; see docs/architecture.md
    replay_ids: list[str] = field(default_factory=list)
    seen: float = 0.0  # wall time the file was last seen by a scan

    @property
    def key(self) -> str:
        return f"{self.dev}:{self.ino}:{self.fp}:{self.fp_len}"


Checkpoints = dict[str, dict[str, FileEntry]]  # tailer name -> identity key -> entry


def load(path: str) -> Checkpoints:
    """Read the checkpoint file; {} when there is none (or it is unusable: then warn)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return {}
    try:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else '?'}")
        out: Checkpoints = {}
        for name, files in doc["tailers"].items():
            out[name] = {}
            for key, e in files.items():
                entry = FileEntry(**e)
                out[name][key] = entry
        return out
    except (ValueError, TypeError, KeyError) as exc:
        aside = path + ".bad"
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        log.warning(
            "The checkpoint file %s is unusable (%s); it was moved to %s and the logs are read "
            "as if for the first time (start_at applies; events already sent may be sent again "
            "with the same event_id).",
            path,
            exc,
            aside,
        )
        return {}


def save(path: str, checkpoints: Checkpoints) -> None:
    """Write atomically: tmp (0600) + fsync + rename + fsync of the folder."""
    # orjson writes a dataclass as the object of its fields, in order (what `asdict` gives,
    # without its deep copy of every replay id list: this runs several times a second)
    doc = {"version": VERSION, "tailers": checkpoints}
    write_atomic(path, orjson.dumps(doc))


def expired(entry: FileEntry, now: float, max_age_secs: float) -> bool:
    """An entry for a file not seen for `max_age_secs` is dropped."""
    return now - entry.seen > max_age_secs

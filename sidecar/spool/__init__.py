"""The spool: the durable queue between enrichment and the sinks (DESIGN.md section 2).

segment.py   the record format and the scan that finds damage (no policy)
disk.py      Spool: segment files, fsync policy, size cap and backpressure, release
reader.py    SpoolReader: one sink's view (reads in order, releases in any order)
state.py     cursors.json and the quarantine copies
"""

from sidecar.spool.disk import Spool
from sidecar.spool.reader import SpoolEntry, SpoolReader

__all__ = ["Spool", "SpoolEntry", "SpoolReader"]

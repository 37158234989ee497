"""The spool: the durable queue between enrichment and the sinks (DESIGN.md section 2).

segment.py   the record format and the scan that finds damage (no policy)
disk.py      Spool: segment files, fsync policy, size cap and backpressure, readers, release
"""

from sidecar.spool.disk import Spool
from sidecar.spool.reader import SpoolEntry, SpoolReader

__all__ = ["Spool", "SpoolEntry", "SpoolReader"]

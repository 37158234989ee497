"""Join access records and body records per request id, in log time (see `table.py`)."""

from sidecar.join.clock import Frontier, may_read
from sidecar.join.pending import line_ts
from sidecar.join.storage import CompactFn
from sidecar.join.table import Joiner

__all__ = ["CompactFn", "Frontier", "Joiner", "line_ts", "may_read"]

"""Join access records and body records per request id, in log time (see `table.py`)."""

from sidecar.join.clock import Frontier, may_read
from sidecar.join.table import CompactFn, Joiner, line_ts

__all__ = ["CompactFn", "Frontier", "Joiner", "line_ts", "may_read"]

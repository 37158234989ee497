"""The only place that wires the stages together (this package).

    tail(access) ─┐                                                  ┌─► sink 1
                  ├─► parse ─► join ─► [q] ─► enrich ─► [q] ─► spool ─┤
    tail(body)  ──┘                                                  └─► sink N

Each source has one `Joiner`; its two tailers feed it in the same event loop. Between the join
and enrichment, and between enrichment and the sinks, bounded queues of *lists* carry the data:
when a sink is slow the queues fill, the tailers stop reading, and the logs on disk are the
buffer (backpressure). Memory stays flat.

The spool (disk) is between enrichment and the sinks: `_run_spool` appends what enrichment made
(fsync'd, then `_events_durable`), each sink reads the spool and releases what its destination
has taken. When the spool is full, `_run_spool` waits, the queues fill and reading pauses.
Shutdown (`_watch_delivery`): SIGTERM stops reading; delivery goes on for up to
`shutdown_timeout_secs`, then stops, leaving the rest in the spool. `run --once` gives up when
nothing was delivered for `shutdown_timeout_secs`; `undelivered` then says how many wait.

    core.py         Pipeline: builds the stages from the config, runs and drains them
    readers.py      tail -> parse -> join, in log time; expiry; the hand-over to enrichment
    delivery.py     enrichment -> spool -> sinks; the shutdown bound
    handback.py     positions held until the spool has the event (the tail checkpoints)
    supervision.py  a dead stage stops the process loudly; signal handlers
"""

from sidecar.pipeline.core import Pipeline
from sidecar.pipeline.supervision import StageFailed, encodable, install_signal_handlers

__all__ = ["Pipeline", "StageFailed", "encodable", "install_signal_handlers"]

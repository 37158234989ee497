"""A protocol-faithful Splunk HTTP Event Collector for tests and dry runs.

Every reply is derived from the Splunk documentation as recorded in
`/work/shared/reference/hec-and-splunk-apps.md` section 1 (the status-code table 1.7, the
indexer-acknowledgement flow 1.6, authentication 1.2, the envelope 1.3, batching 1.4); each rule
cites the entry it comes from. It is not shaped after our own client.

    protocol.py   codes, paths, token settings, envelope checks, reply bodies (no network)
    server.py     HecTestServer: the aiohttp app, scripted faults, acks, run_in_thread()
    __main__.py   `python -m sidecar.testing --port 8088 --token T [--ack]`: prints each
                  accepted event as a JSON line on stdout
"""

from sidecar.testing.protocol import (
    ACK_PATH,
    CODES,
    EVENT_PATHS,
    HEALTH_PATHS,
    HTTP_TEXTS,
    Fault,
    RequestRecord,
    TokenSettings,
    parse_events,
)
from sidecar.testing.server import HecTestServer

__all__ = [
    "ACK_PATH",
    "CODES",
    "EVENT_PATHS",
    "HEALTH_PATHS",
    "HTTP_TEXTS",
    "Fault",
    "HecTestServer",
    "RequestRecord",
    "TokenSettings",
    "parse_events",
]

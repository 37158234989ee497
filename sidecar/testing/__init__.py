"""A protocol-faithful Splunk HTTP Event Collector for tests and dry runs.

Every reply is derived from Splunk's documentation of HTTP Event Collector
(https://docs.splunk.com/Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector,
.../TroubleshootHTTPEventCollector for the status codes, .../AboutHECIDXAck for indexer
acknowledgement); section numbers below (1.2 auth, 1.3 envelope, 1.4 batching, 1.6 acks, 1.7 codes)
are those of the project's reading notes of those pages. It is not shaped after our own client.

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

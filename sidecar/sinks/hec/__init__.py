"""The Splunk HEC sink: encoder (pure), service (the only HTTP code), acks, sink (the loop),
deadletter (the dead-letter file), hints (what to do about a rejection)."""

from sidecar.sinks.hec.sink import HecSink

__all__ = ["HecSink"]

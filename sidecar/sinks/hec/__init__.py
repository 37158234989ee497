"""The Splunk HEC sink: encoder (pure), service (the only HTTP code), acks, sink (the loop)."""

from sidecar.sinks.hec.sink import HecSink

__all__ = ["HecSink"]

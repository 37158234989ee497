"""The Splunk HEC sink: encoder (pure), service (the only HTTP code), acks, sink (the loop),
deadletter (the dead-letter file), hints (what to do about a rejection)."""

from typing import Any

__all__ = ["HecSink"]


def __getattr__(name: str) -> Any:
    # HecSink (and the ssl module its client uses) loads on first use, so that the
    # dead-letter file's helpers can be imported without it.
    if name == "HecSink":
        from sidecar.sinks.hec.sink import HecSink

        return HecSink
    raise AttributeError(name)

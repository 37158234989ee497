"""The Splunk side of the sidecar: the app package, the offline SPL checks and splunk-sdk.

`client.py` is the only module of the project that imports splunk-sdk (`splunklib`); the other
modules here are pure (no network).
"""

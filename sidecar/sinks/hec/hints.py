"""What an operator should do about a permanent HEC rejection, by HEC code (table 1.7).

The sink puts these hints in its log messages; `{key}` stands for the sink's config key.
"""

from __future__ import annotations

HINTS: dict[int, str] = {
    1: "the token is disabled in Splunk: enable it under Settings > Data inputs > HTTP Event "
    "Collector",
    2: "the request carried no token: check {key}.token",
    3: "the Authorization header was refused: check {key}.token",
    4: "check {key}.token",
    7: "allow the index on the token in Splunk, or change {key}.index",
    10: "HEC wants a channel: this is a bug in the sidecar, please report it",
    11: "HEC refused the channel: this is a bug in the sidecar, please report it",
    14: "turn on indexer acknowledgement for the token, or set {key}.acknowledgements.enabled "
    "to false",
    21: "check {key}.token",
    22: "the token is disabled in Splunk: enable it",
}
_ENCODER_BUG = "the event was malformed for HEC: this is a bug in the sidecar, please report it"
for _code in (5, 6, 12, 13, 15):
    HINTS[_code] = _ENCODER_BUG
# The codes that reject the token itself, not the events.
TOKEN_CODES = frozenset({1, 2, 3, 4, 21, 22})
# The hint for a rejection with no HEC code, or a code not above.
DEFAULT_HINT = "check {key}.endpoints and {key}.path"

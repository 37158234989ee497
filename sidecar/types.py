"""Records that cross stage boundaries.

Data flows one way: sources -> parse -> join -> enrich -> spool -> sinks. Each stage owns its own
internal types; only the records that travel between stages live here, so that no stage imports a
sibling.

    AccessRecord    parse/access.py  -> join       one per finished HTTP request
    BodyRecord      parse/body.py    -> join       one per body-log line (a chunk, an end, a body)
    ParsedBody      parse/providers  -> enrich     what a whole response body says
    Usage           parse/providers  -> enrich     normalised token counts
    Cost            enrich/pricing   -> enrich     money for one request, in integer nano-USD
    Completed       join             -> enrich     an access record plus its body, joined
    Compacted       parse/compact    -> join       a long open stream cut down to head, text, tail
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Outcome of a request (event field `status`).
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_RATE_LIMITED = "rate_limited"
STATUS_CANCELLED = "cancelled"
STATUS_TIMEOUT = "timeout"
STATUS_CLIENT_ERROR = "client_error"

# How the token counts were obtained (event field `token_source`).
TOKENS_FROM_USAGE = "usage"
TOKENS_ESTIMATED_TIKTOKEN = "estimated_tiktoken"
TOKENS_ESTIMATED_CALIBRATED = "estimated_calibrated"
TOKENS_ESTIMATED_HEURISTIC = "estimated_heuristic"
TOKENS_ESTIMATED_TIMING = "estimated_timing"  # hidden reasoning estimated from stream timing
TOKENS_NONE = "none"

# Pricing outcome (event field `cost_status`).
COST_PRICED = "priced"
COST_ESTIMATED = "estimated"
COST_UNPRICED_MODEL = "unpriced_model"
COST_NO_USAGE = "no_usage"

NANO = 1_000_000_000  # nano-USD per USD


@dataclass(slots=True)
class Usage:
    """Normalised token usage (DESIGN.md section 4).

    `input_tokens` counts all input, cached and cache-write tokens included;
    `output_tokens` counts all output, reasoning included. The other fields are subsets.
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    cache_write_1h_input_tokens: int = 0  # subset of cache_write_input_tokens (Anthropic 1h TTL)
    output_tokens: int = 0
    reasoning_tokens: int = 0
    invalid: bool = False  # a value was not a non-negative integer: never priced as it stands
    # The provider reported no reasoning count although the model reasoned (Claude thinking,
    # Mistral reasoning content): the event says null rather than 0.
    reasoning_unknown: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.cache_write_input_tokens += other.cache_write_input_tokens
        self.cache_write_1h_input_tokens += other.cache_write_1h_input_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.invalid = self.invalid or other.invalid
        self.reasoning_unknown = self.reasoning_unknown or other.reasoning_unknown


@dataclass(slots=True)
class BillingPart:
    """One separately billed part of a response (an Anthropic `usage.iterations` entry)."""

    model: str | None
    usage: Usage


@dataclass(slots=True)
class ParsedBody:
    """What a response body (SSE stream or JSON) says about the request."""

    provider: str | None = None  # openai, azure, anthropic, gemini, vertex, other
    api: str | None = None  # chat.completions, responses, messages, generate_content, embeddings
    model: str | None = None  # as served (never Azure's empty first-chunk model)
    provider_request_id: str | None = None
    is_stream: bool = False
    usage: Usage | None = None  # None: the body carried no usage
    billing_parts: list[BillingPart] = field(default_factory=list)  # empty: bill `usage` whole
    finish_reason: str | None = None
    service_tier: str | None = None
    terminal_seen: bool = False  # [DONE], message_stop, response.completed, final chunk...
    error_type: str | None = None  # mid-stream error event or error body
    error_code: str | None = None
    error_http_status: int | None = None  # status found inside an error body, if any
    retry_after_secs: float | None = None  # e.g. Gemini RetryInfo.retryDelay in a 429 body
    # Estimation inputs (contract 4), filled only with `want_text`: strings to count, each one
    # counted on its own and summed (OpenAI deltas are one token each, so a run of newline
    # deltas is not merged; Anthropic and Gemini blocks are joined per block), and the fixed
    # per-item overheads the provider bills on top (per tool call, end of message...).
    output_text: list[str] = field(default_factory=list)
    output_extra_tokens: int = 0
    reasoning_model_hint: bool = False  # the body shows hidden reasoning (lower-bound estimates)
    malformed_events: int = 0  # SSE payloads that were not JSON
    # An answer was read from the body's text (visible reasoning without a reasoning count):
    # a window of the body (its head and tail) cannot give it, the whole body must.
    read_text: bool = False
    truncated: bool = False  # the body was cut (size cap, `truncated: true`, missing terminal)
    compressed: bool = False  # the body is gzip: the proxy forwarded Accept-Encoding
    # `usage` is a snapshot from before the stream ended (Anthropic message_start without a
    # message_delta, a Gemini running snapshot, continuous usage stats): input counts are right,
    # output is only a lower bound.
    usage_partial: bool = False


def stream_parsed(provider: str | None, api: str | None, truncated: bool) -> ParsedBody:
    """`ParsedBody(provider=provider, api=api, truncated=truncated, is_stream=True)`, the
    parsers' start on a stream, without keywords: a class called with keywords first builds a
    dict of them, a third of the call (once per stream)."""
    pb = ParsedBody(provider, api)
    pb.is_stream = True
    pb.truncated = truncated
    return pb


@dataclass(slots=True)
class AccessRecord:
    """One access-log line mapped onto the canonical fields (DESIGN.md section 3)."""

    request_id: str
    time: float | None = None  # epoch seconds, request end
    method: str | None = None
    path: str | None = None
    status: int | None = None
    duration_ms: float | None = None
    ttft_ms: float | None = None
    upstream_host: str | None = None
    stream: bool | None = None  # requested
    model: str | None = None  # requested
    user: str | None = None
    tenant: str | None = None
    api_key_id: str | None = None  # keyed hash of the raw key; the raw key never leaves parse
    conversation_id: str | None = None
    client_request_id: str | None = None
    attempt: int | None = None
    request_completion: str | None = None  # nginx $request_completion: "OK" or ""
    response_headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    response_body: str | None = None  # non-streaming body logged in the access line
    usage: dict[str, Any] | None = None  # usage object logged in the access line
    request_body: str | None = None  # only to count input tokens; never forwarded
    invalid_fields: list[str] = field(default_factory=list)  # present but bad: nulled, counted
    lossy_utf8: bool = False  # the line held invalid UTF-8 (replaced)


# Kinds of body-log records.
BODY_DATA = 0  # `chunks` style: one network chunk of the response
BODY_END = 1  # `chunks` style: the end record
BODY_WHOLE = 2  # `bodies` style: the whole body at once


@dataclass(slots=True)
class BodyRecord:
    request_id: str
    kind: int
    ts: float | None = None
    data: str = ""  # chunk text or whole body
    end: str | None = None  # complete | client_closed | upstream_closed | upstream_error
    content_type: str | None = None
    truncated: bool = False


@dataclass(slots=True, eq=False)
class Positions:
    """Which source bytes a request came from (issue 8): per tailed file key, the start offset
    of the first batch in which the request appeared. Set by the join and the hand-back, read
    by the ledger. Compared and hashed by identity: the ledger holds the object itself (two
    requests with one id have two), so the same object must travel from the join to the
    event and back to the ledger."""

    rid: str
    at: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Completed:
    """A request as the join hands it on: its access record and its body.

    The body comes as `parts` (body-log records, still escaped) plus the `assemble` function that
    decodes them; `text()` decodes the whole body once, `window()` only its first and last parts,
    which is all most provider parsers need (see parse/response.py). `body` holds the decoded
    text once known (or from the start, for a whole body).
    """

    request_id: str
    source: str  # identity of the source (config name), part of the event id
    access: AccessRecord | None
    body: str | None  # decoded body; None: not decoded yet, or no body record seen
    end: str | None  # the body's end record, if any
    content_type: str | None = None
    body_truncated: bool = False
    expired: bool = False  # emitted by expiry: one side never arrived
    first_ts: float | None = None  # first body record
    last_ts: float | None = None  # last body record
    source_path: str | None = None  # the access log path (HEC `source`)
    body_bad_parts: int = 0  # body-log data records that were not valid JSON strings (dropped)
    body_lossy: bool = False  # invalid UTF-8 in the body was replaced
    # body-log lines: a list, or a sequence that cuts them from the join's chunks where read
    # (join/bodylines.py); len, indexes from both ends, slices (lists), iteration
    parts: Sequence[Any] | None = None
    # A long open stream compacted by the join (contract 4): the estimation inputs of the
    # decoded prefix that is no longer in `parts`.
    prior_text: list[str] = field(default_factory=list)
    prior_extra_tokens: int = 0
    assemble: Callable[[list[Any]], tuple[str, int, int]] | None = None
    positions: Positions | None = None  # source positions to release once durable (issue 8)
    # Set only on a second request with an id already seen: a stable key from the logs (the
    # access line's time and byte offset) that keeps its event_id apart and deterministic.
    duplicate_key: str | None = None
    raw_bytes: int = 0  # body-log bytes the join held for it (the queue's byte bound)

    def has_body(self) -> bool:
        return bool(self.parts) or bool(self.body)

    def text(self) -> str | None:
        """The whole body, decoded once (counting bad and lossy parts)."""
        if self.body is None and self.parts and self.assemble is not None:
            self.body, self.body_bad_parts, lossy = self.assemble(self.parts)
            self.body_lossy = bool(lossy)
        return self.body

    def window(self, head_bytes: int, tail_bytes: int) -> str | None:
        """Whole SSE events from the first parts (at least `head_bytes` of them) and from the
        last parts (at least `tail_bytes`), decoded and joined by a blank line; None when that
        would be most of the body anyway (then decode it whole), or when no event boundary is
        found near an edge.

        Both pieces are cut on event boundaries (a blank line): the head after its last one, the
        tail after the last one of the part before it. A piece that began or ended inside an
        event would hand the parser a fragment: a tail starting mid-event is a line that is not
        an SSE field, silently skipped, and that event (say, the one carrying finish_reason)
        would be lost without a trace.
        """
        parts = self.parts
        assemble = self.assemble
        if self.body is not None or not parts or assemble is None:
            return None
        n = len(parts)
        h = size = 0
        while h < n and size < head_bytes:
            size += len(parts[h])
            h += 1
        t = n
        size = 0
        while t > h and size < tail_bytes:
            t -= 1
            size += len(parts[t])
        for _ in range(_WINDOW_BOUNDARY_STEPS):  # step the tail back to a part with a boundary
            if t <= h:
                return None
            t -= 1
            cut = _last_boundary(assemble(parts[t : t + 1])[0])
            if cut >= 0:
                break
        else:
            return None
        if t - h < (n // 4) + 1:  # the gap would be small: not worth two decodes
            return None
        first = assemble(parts[:h])[0]
        end = _last_boundary(first)
        if end < 0:
            return None
        last = assemble(parts[t:])[0]
        return first[:end] + "\n\n" + last[cut:]


def _last_boundary(text: str) -> int:
    """The offset just past the last blank line (SSE event boundary) in `text`, or -1."""
    k = text.rfind("\n\n")
    j = text.rfind("\r\n\r\n")
    return max(k + 2 if k >= 0 else -1, j + 4 if j >= 0 else -1)


_WINDOW_BOUNDARY_STEPS = 8  # parts to step back to find an event boundary for the window's tail


@dataclass(slots=True)
class Compacted:
    """parse/compact.py -> join: a long open stream cut down (see there): the stream's new head
    part (None: keep the old one), the raw tail parts to keep, the visible text and per-item
    token overheads of what was dropped, and the invalid / lossy parts met while decoding."""

    head: Any
    tail: list
    text: list[str]
    extra_tokens: int = 0
    bad_parts: int = 0
    lossy: int = 0


NOT_A_STREAM = Compacted(None, [], [])  # `compact`'s answer for a body that is not SSE


@dataclass(slots=True)
class Cost:
    """Money for one request, in integer nano-USD (1e-9 USD) per component."""

    cost_known: bool
    cost_status: str
    input_nusd: int = 0  # uncached, non-cache-write input
    cached_input_nusd: int = 0
    cache_write_nusd: int = 0
    cache_write_1h_nusd: int = 0  # the part of cache_write_nusd for 1-hour cache writes
    output_nusd: int = 0
    total_nusd: int = 0
    pricing_model: str | None = None
    pricing_source: str | None = None  # genai-prices | override | None
    pricing_version: str | None = None
    rates: dict[str, Any] | None = None  # USD per million tokens, for display (`price` command)


def nusd_to_usd(nusd: int) -> float:
    """A float for the event: the nearest double to an exact 1e-9 amount (never accumulated)."""
    return nusd / NANO


@dataclass(slots=True)
class OutEvent:
    """An enriched event on its way to the sinks: the `llm_usage/1` body plus envelope metadata."""

    body: dict[str, Any]  # the HEC `event` object (schema llm_usage/1)
    time: float  # epoch seconds (request end)
    source: str | None  # HEC `source`: the access log path by default
    sourcetype: str = "llm:usage"
    positions: Positions | None = None  # copied from Completed; released by the durable hand-back
    payload: bytes | None = None  # the spool record (spool/segment.py), made once by enrichment

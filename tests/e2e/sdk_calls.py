"""The client side of the SDK end-to-end test: the official SDKs, the calls they make.

`plan()` is the traffic (which recording, which SDK feature, which failure and retry policy),
`run_calls()` sends it through the proxy, CONCURRENCY at a time, with the unmodified `openai`,
`anthropic` and `google-genai` clients of `Clients`. The SDKs are in the `test` extra: without
them the test is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import importlib
import os
import random
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest


def _sdk(module: str) -> Any:
    """The SDKs are in the `test` extra: skipped without them, except under CI, where it fails."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = f"{module} is not installed ({exc}); pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {msg}", pytrace=False)
        pytest.skip(msg, allow_module_level=True)


openai = _sdk("openai")
anthropic = _sdk("anthropic")
genai = _sdk("google.genai")
genai_types = _sdk("google.genai.types")

PROMPT = "PROMPT-SECRET-7f3a: what is the capital of France? " + "lorem ipsum " * 20
OPENAI_KEY = "sk-proj-E2ESECRETopenai0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-api03-E2ESECRETanthropic0123456789"
GEMINI_KEY = "AIzaE2ESECRETgemini0123456789abcdef"
CONCURRENCY = 24
MODEL_REQUESTED = {  # what the client asks for (the recordings' request models)
    "openai_chat_usage_1": "gpt-4o-mini",
    "openai_chat_nousage_1": "gpt-3.5-turbo",
    "azure_chat_usage_1": "gpt-5-mini",
    "azure_responses_usage_1": "gpt-4o-mini",
    "openai_responses_usage_1": "gpt-4o",
    "openai_responses_reasoning_1": "gpt-5",
    "anthropic_cache_read_1": "claude-3-5-sonnet-20240620",
    "anthropic_cache_write_1": "claude-3-5-sonnet-20240620",
    "anthropic_stream_1": "claude-haiku-4-5-20251001",
    "gemini_stream_1": "gemini-2.0-flash-exp",
}


# ------------------------------------------------------------------ the calls
@dataclass
class Call:
    kind: str  # chat_stream | chat_nousage | chat_json | responses | anthropic | gemini
    fixture: str
    fail: str = ""  # "429x2": the first 2 attempts get a 429
    max_retries: int | None = None  # client.with_options(max_retries=...)
    cancel_after: int | None = None  # close the stream object after this many events
    gap_ms: int | None = None  # the upstream's pace for this call (default: 20 ms per event)
    crid: str = field(default_factory=lambda: uuid.uuid4().hex)
    user: str = "alice"
    outcome: str = ""  # "ok" or the SDK exception's class name
    proxy_request_id: str | None = None  # X-Proxy-Request-Id of the attempt the client saw
    events_read: int = 0
    client_input_tokens: int | None = None  # the usage the SDK parsed (non-streaming)
    on_event: tuple[int, Callable[[], None]] | None = None  # run this after the n-th event

    def headers(self) -> dict[str, str]:
        spec = self.fixture + (f";fail={self.fail}" if self.fail else "")
        spec += f";gap={self.gap_ms}" if self.gap_ms else ""
        return {
            "X-Client-Request-Id": self.crid,
            "X-Replay": spec,  # test-only: which recording the upstream replays
            "X-LLM-User": self.user,
            "X-LLM-Tenant": "acme",
        }


def plan() -> list[Call]:
    calls: list[Call] = []

    def add(n: int, kind: str, fixture: str, **kw: Any) -> None:
        calls.extend(Call(kind, fixture, user=f"user{i % 7}", **kw) for i in range(n))

    add(40, "chat_stream", "openai_chat_usage_1")
    add(15, "chat_json", "openai_chat_usage_1")
    add(12, "chat_nousage", "openai_chat_nousage_1")
    add(12, "chat_nousage", "openai_chat_nousage_1", cancel_after=5)
    add(15, "chat_stream", "azure_chat_usage_1")
    add(8, "responses", "azure_responses_usage_1")
    add(15, "responses", "openai_responses_usage_1")
    add(8, "responses", "openai_responses_reasoning_1")
    add(10, "anthropic", "anthropic_cache_read_1")
    add(10, "anthropic", "anthropic_cache_write_1")
    add(5, "anthropic", "anthropic_stream_1")
    add(8, "anthropic", "anthropic_cache_read_1", cancel_after=6)
    add(10, "gemini", "gemini_stream_1")
    # rate limited: 2 x 429, then the third attempt succeeds (3 attempts, one retry_group)
    add(10, "chat_stream", "openai_chat_usage_1", fail="429x2", max_retries=2)
    # rate limited until the SDK gives up (2 attempts, RateLimitError)
    add(5, "chat_stream", "openai_chat_usage_1", fail="429x99", max_retries=1)
    # a 500, retried by the SDK's default policy, then success (2 attempts)
    add(5, "chat_json", "openai_chat_usage_1", fail="500x1")
    # a 500 with retries off (1 attempt, InternalServerError)
    add(5, "chat_json", "openai_chat_usage_1", fail="500x99", max_retries=0)
    random.Random(15).shuffle(calls)  # mixed traffic, the same order every run
    # in the middle: the long stream during which the logs are rotated (see run_calls)
    calls.insert(len(calls) // 2, Call("anthropic", "anthropic_cache_read_1", gap_ms=100))
    return calls


def failing(c: Call) -> int:
    """How many attempts of this call the upstream fails."""
    return int(c.fail.split("x")[1]) if c.fail else 0


def succeeds(c: Call) -> bool:
    """The SDK retries often enough (its default max_retries is 2)."""
    return failing(c) <= (2 if c.max_retries is None else c.max_retries)


def expected_attempts(c: Call) -> int:
    return failing(c) + 1 if succeeds(c) else (c.max_retries or 0) + 1


class Clients:
    def __init__(self, port: int) -> None:
        base = f"http://127.0.0.1:{port}"
        self.openai = openai.OpenAI(api_key=OPENAI_KEY, base_url=f"{base}/v1", timeout=30)
        self.anthropic = anthropic.Anthropic(api_key=ANTHROPIC_KEY, base_url=base, timeout=30)
        self.gemini = genai.Client(
            api_key=GEMINI_KEY,
            http_options=genai_types.HttpOptions(
                base_url=base, api_version="v1beta", timeout=30_000
            ),
        )

    def close(self) -> None:
        self.openai.close()
        self.anthropic.close()


def _consume(c: Call, stream: Any) -> None:
    """Read a stream to its end, or close it after `cancel_after` events (a client cancel)."""
    c.proxy_request_id = stream.response.headers.get("x-proxy-request-id")
    try:
        for _ in stream:
            c.events_read += 1
            if c.on_event is not None and c.events_read == c.on_event[0]:
                c.on_event[1]()
            if c.cancel_after is not None and c.events_read >= c.cancel_after:
                break
    finally:
        stream.close()


def run_call(cl: Clients, c: Call) -> None:
    model = MODEL_REQUESTED[c.fixture]
    messages = [{"role": "user", "content": PROMPT}]
    try:
        if c.kind == "gemini":
            cfg = genai_types.GenerateContentConfig(
                http_options=genai_types.HttpOptions(headers=c.headers())
            )
            for _ in cl.gemini.models.generate_content_stream(
                model=model, contents=PROMPT, config=cfg
            ):
                c.events_read += 1
        elif c.kind == "anthropic":
            ac = cl.anthropic
            if c.max_retries is not None:
                ac = ac.with_options(max_retries=c.max_retries)
            stream = ac.messages.create(
                model=model,
                max_tokens=1024,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                extra_headers=c.headers(),
            )
            _consume(c, stream)
        else:
            oc = cl.openai
            if c.max_retries is not None:
                oc = oc.with_options(max_retries=c.max_retries)
            if c.kind == "chat_json":
                raw = oc.chat.completions.with_raw_response.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    extra_headers=c.headers(),
                )
                c.proxy_request_id = raw.headers.get("x-proxy-request-id")
                completion = raw.parse()
                c.client_input_tokens = completion.usage.prompt_tokens if completion.usage else None
            elif c.kind == "responses":
                stream = oc.responses.create(
                    model=model, input=PROMPT, stream=True, extra_headers=c.headers()
                )
                _consume(c, stream)
            else:
                extra = (
                    {"stream_options": {"include_usage": True}} if c.kind == "chat_stream" else {}
                )
                stream = oc.chat.completions.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                    extra_headers=c.headers(),
                    **extra,  # type: ignore[arg-type]
                )
                _consume(c, stream)
        c.outcome = "ok"
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        c.outcome = type(exc).__name__


def run_calls(cl: Clients, calls: list[Call], rotate: Callable[[], None]) -> None:
    """All calls, CONCURRENCY at a time. The call in the middle of the plan is a long Anthropic
    stream (100 ms per event) that runs `rotate()` itself after its 2nd event: at least this
    stream (and whatever else is in flight) straddles the rotation, whatever the machine's load."""
    mid = calls[(len(calls) - 1) // 2]  # where plan() put it
    assert mid.fixture == "anthropic_cache_read_1" and mid.cancel_after is None
    mid.on_event = (2, rotate)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for f in [pool.submit(run_call, cl, c) for c in calls]:
            f.result()

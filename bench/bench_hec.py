"""Benchmark of HEC delivery through the spool to the HEC test server on 127.0.0.1 (not a test).

Events shaped like real `llm_usage/1` events (the examples' event with its ids varied) are
appended to a spool in a temporary folder; the HEC sink reads them and ships them to the HEC test
server (running in its own thread). Reported, for gzip and for no compression:

- events/s from the first append to the last release (spool write + fsync, read, encode,
  compress, POST, the server's own parsing), median over the samples;
- bytes on the wire per event (request bodies as the server received them).

Baseline in the same run: the same envelopes, pre-encoded and pre-cut into the same batches,
POSTed in a bare aiohttp loop to the same server (no spool, no encoding, no gzip): the transport
and server ceiling. The sink's figure is reported as a ratio to it.

    .venv/bin/python bench/bench_hec.py [--events 20000] [--samples 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import threading
import time

import aiohttp

from sidecar import config
from sidecar.sinks.hec.encoder import encode_event
from sidecar.sinks.hec.sink import HecSink
from sidecar.spool import Spool
from sidecar.testing import HecTestServer, TokenSettings
from sidecar.types import OutEvent

TOKEN = "bench-token"


def make_events(n: int) -> list[OutEvent]:
    body = {
        "schema": "llm_usage/1",
        "request_id": "",
        "provider_request_id": "chatcmpl-AbCdEf0123456789",
        "source_host": "proxy-1",
        "provider": "openai",
        "api": "chat.completions",
        "model": "gpt-4o-2024-08-06",
        "model_requested": "gpt-4o",
        "pricing_model": "gpt-4o-2024-08-06",
        "is_streaming": True,
        "status": "ok",
        "http_status": 200,
        "finish_reason": "stop",
        "duration_ms": 1834,
        "ttft_ms": 412,
        "input_tokens": 1650,
        "cached_input_tokens": 1024,
        "output_tokens": 512,
        "reasoning_tokens": 0,
        "total_tokens": 2162,
        "tokens_estimated": False,
        "token_source": "provider",
        "estimated_cost_usd": 0.00717,
        "input_cost_usd": 0.0015650,
        "cached_input_cost_usd": 0.00128,
        "output_cost_usd": 0.00512,
        "cost_known": True,
        "pricing_source": "genai-prices",
        "user": "u-3f9a1c",
        "tenant": "team-a",
        "api_key_id": "k-8e21b0f6a9d4",
        "ratelimit_remaining_tokens": 29000000,
    }
    rng = random.Random(1)
    models = ["gpt-4o-2024-08-06", "gpt-4.1-mini", "claude-sonnet-4-5", "gemini-2.5-flash"]
    out = []
    for i in range(n):
        inp, outp = rng.randint(10, 200_000), rng.randint(1, 8_000)
        b = dict(
            body,
            request_id=f"req-{rng.getrandbits(64):016x}",
            event_id=f"{rng.getrandbits(128):032x}",
            provider_request_id=f"chatcmpl-{rng.getrandbits(96):024x}",
            model=rng.choice(models),
            duration_ms=rng.randint(100, 60_000),
            ttft_ms=rng.randint(50, 3_000),
            input_tokens=inp,
            cached_input_tokens=rng.randint(0, inp),
            output_tokens=outp,
            total_tokens=inp + outp,
            estimated_cost_usd=rng.randint(1, 10**7) / 1e9,
            user=f"u-{rng.randint(1, 500):04d}",
            api_key_id=f"k-{rng.getrandbits(48):012x}",
        )
        out.append(OutEvent(body=b, time=1.7e9 + i * 0.01, source="/var/log/nginx/llm.log"))
    return out


def start_server() -> tuple[HecTestServer, str, object]:
    hec = HecTestServer({TOKEN: TokenSettings()})
    url, stop = hec.run_in_thread()
    return hec, url, stop


async def through_sink(events: list[OutEvent], url: str, compression: str, tmp: str) -> float:
    cfg = config.HecSink(
        endpoints=[url],
        token=TOKEN,
        compression=compression,  # type: ignore[arg-type]
        allow_insecure_http=True,
        batch=config.Batch(max_events=1000, max_bytes=1_000_000, timeout_secs=0.05),
    )
    sink = HecSink(cfg, host="bench", default_source=None, dead_letter_path=f"{tmp}/dl.ndjson")
    spool = Spool(f"{tmp}/spool", max_bytes=1 << 30, segment_bytes=16 << 20, fsync_interval_ms=50)
    spool.open()
    reader = spool.reader("hec")
    await sink.start()
    t0 = time.perf_counter()
    delivering = asyncio.create_task(sink.run(reader))
    # As the pipeline does: each append takes what enrichment made since the last fsync.
    for i in range(0, len(events), 2000):
        await spool.append(events[i : i + 2000])
    spool.finish_input()
    await delivering
    elapsed = time.perf_counter() - t0
    assert spool.pending_events == 0 and sink.stats["events_sent_total"] == len(events)
    await sink.close()
    await spool.close()
    return elapsed


async def bare_posts(events: list[OutEvent], url: str) -> float:
    envs = [encode_event(e, host="bench", index=None, source=None) for e in events]
    batches = [b"".join(envs[i : i + 1000]) for i in range(0, len(envs), 1000)]
    headers = {"Authorization": f"Splunk {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s:
        t0 = time.perf_counter()
        for body in batches:
            async with s.post(url + "/services/collector/event", data=body, headers=headers) as r:
                assert r.status == 200
                await r.read()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--samples", type=int, default=3)
    args = ap.parse_args()
    events = make_events(args.events)
    hec, url, stop = start_server()
    assert threading.active_count() >= 2
    try:
        rates: dict[str, list[float]] = {"baseline": [], "gzip": [], "none": []}
        wire: dict[str, float] = {}
        for _ in range(args.samples):
            n0 = len(hec.requests)
            rates["baseline"].append(args.events / asyncio.run(bare_posts(events, url)))
            for comp in ("gzip", "none"):
                n0 = len(hec.requests)
                with tempfile.TemporaryDirectory() as tmp:
                    secs = asyncio.run(through_sink(events, url, comp, tmp))
                rates[comp].append(args.events / secs)
                wire[comp] = sum(r.body_bytes for r in hec.requests[n0:]) / args.events
            hec.events.clear()
    finally:
        stop()  # type: ignore[operator]
    base = statistics.median(rates["baseline"])
    print(f"{args.events} events x {args.samples} samples, HEC test server on 127.0.0.1")
    print(f"  baseline (bare POSTs, pre-encoded, no gzip): {base:9.0f} events/s")
    for comp in ("gzip", "none"):
        r = statistics.median(rates[comp])
        print(
            f"  sink via spool, compression={comp:4s}: {r:9.0f} events/s "
            f"({r / base:.2f} x baseline), {wire[comp]:7.1f} bytes/event on the wire"
        )
    print(f"  gzip saves {1 - wire['gzip'] / wire['none']:.0%} of the bytes on the wire")


if __name__ == "__main__":
    main()

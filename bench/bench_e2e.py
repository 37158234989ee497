"""End to end, in fresh processes: the whole sidecar on the generator's large mode, next to the
naive baseline and the floors, measured in the same run, interleaved.

    .venv/bin/python bench/bench_e2e.py [--requests 100000] [--repeat 3] [--seed 7]
                                        [--concurrency 50] [--chunk-scale 1] [--cases ...]

Data: `examples/generate.py --mix large` (streams of 20 to 400 content events, median 120;
about 70% OpenAI, 20% Anthropic, 10% Gemini; about 50 requests in flight; merged and split
chunks; 429s, server errors and cancels), written once and cached under bench/data/ (git-ignored;
the folder name carries the options and a digest of the generator, so a changed generator writes
new logs). `--requests 20000` runs a smaller set for quick use.

Cases, each a child process (`--cases` picks some; all by default), run `--repeat` times in
rounds that interleave them (the machine is noisy):

- start-up:        `run --once` on empty logs (import, build, tear down: the fixed cost);
- sidecar file:    `llm-hec-sidecar run --once` to the file sink (both logs, join, usage, cost,
                   estimation, spool, NDJSON);
- sidecar hec:     the same to the HEC test server (`python -m sidecar.testing`, its own process,
                   a real socket on 127.0.0.1) with gzip and the default batching;
- naive:           bench/naive_shipper.py: stdlib `json.loads` on every line of both logs,
                   reassembly per request, one HEC request per event, to the same test server;
- json floor:      `for line in body.log: json.loads(line)`;
- orjson floor:    `for line in body.log: orjson.loads(line)`;
- cat floor:       `cat access.log body.log > /dev/null`.

Reported per case (medians): wall and CPU seconds (user + system of the child, `os.wait4`),
peak RSS (`ru_maxrss` of the child), requests/s, body lines/s and MB/s (wall), body lines per
CPU second (the one-core figure), and the ratios to the naive baseline (CPU and wall). The HEC
server's own CPU is shown beside. On a machine with two cores or more each measured child is
pinned to one core (the issue's "on one core": the sidecar's threads share it, as the naive
shipper's single thread has it alone) and the HEC test server to another, so neither takes the
other's core; `--no-pin` lets the scheduler place them. A child's `ru_maxrss` cannot be
below the RSS of this process when it was started (fork + exec), so this process stays small
(data work happens in children) and prints its own peak at the end.

Correctness: the events of the first round (file sink, HEC, and the naive baseline's) are
compared with the generator's truth.json: same count and request ids, no duplicate, and per
request the status, HTTP status, model and the five token counts (tokens estimated exactly where
the truth says so), and for the sidecar the cost, recomputed here from the providers' published
list prices (independent of the sidecar's catalogue).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from naive_shipper import TOKEN_FIELDS  # the truth's token counts (bench/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / "data"
PY = sys.executable
TOKEN = "bench-token"
CASES = ("start-up", "sidecar file", "sidecar hec", "naive", "json floor", "orjson floor", "cat")
KEPT = ("sidecar file", "sidecar hec", "naive")  # their events are checked against the truth
LOADS_LOOP = (
    "import sys\nfrom {mod} import loads\n"
    "with open(sys.argv[1], 'rb') as fh:\n    for line in fh:\n        loads(line)\n"
)


# ---------------------------------------------------------------- data
def data_dir(requests: int, seed: int, concurrency: int, chunk_scale: float) -> Path:
    """The cached logs for these options, generated (in a child) when missing."""
    digest = hashlib.sha256((REPO / "examples" / "generate.py").read_bytes()).hexdigest()[:8]
    name = f"large-r{requests}-s{seed}"
    name += f"-c{concurrency}" if concurrency != 50 else ""
    name += f"-x{chunk_scale:g}" if chunk_scale != 1 else ""
    out = DATA / f"{name}-g{digest}"
    if not (out / "truth.json").exists():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"generating {requests:,} requests into {out} (once) ...", flush=True)
        subprocess.run(
            [
                *(PY, str(REPO / "examples" / "generate.py"), "--mix", "large"),
                *("--requests", str(requests), "--seed", str(seed), "--out", str(tmp)),
                *("--concurrency", str(concurrency), "--chunk-scale", str(chunk_scale)),
            ],
            check=True,
        )
        tmp.rename(out)
    return out


def stats(logs: Path) -> dict:
    """Shape of a data set (runs in a child; cached next to the logs)."""
    import collections

    import orjson

    spans, hosts = [], collections.Counter()
    with open(logs / "access.log", "rb") as fh:
        for line in fh:
            a = orjson.loads(line)
            end = float(a["ts"])
            spans.append((end - float(a["request_time"]), end))
            hosts[a["upstream_host"].split(".")[-2]] += 1
    per_request: collections.Counter[bytes] = collections.Counter()
    with open(logs / "body.log", "rb") as fh:
        for line in fh:
            i = line.find(b'"request_id":"') + 14
            per_request[line[i : i + 32]] += 1
    first = min(s for s, _ in spans)  # in flight: averaged while requests arrive
    last = max(s for s, _ in spans)
    counts = sorted(per_request.values())
    return {
        "requests": len(spans),
        "body_lines": sum(counts),
        "access_bytes": (logs / "access.log").stat().st_size,
        "body_bytes": (logs / "body.log").stat().st_size,
        "lines_per_request_median": statistics.median(counts),
        "lines_per_request_p95": counts[len(counts) * 95 // 100],
        "in_flight_mean": sum(min(e, last) - s for s, e in spans) / (last - first),
        "log_span_secs": last - first,
        "providers_pct": {k: round(100 * v / len(spans), 1) for k, v in hosts.items()},
    }


def data_stats(logs: Path) -> dict:
    path = logs / "stats.json"
    if not path.exists():
        out = subprocess.run(
            [PY, __file__, "--child", "stats", str(logs)], check=True, capture_output=True
        )
        path.write_bytes(out.stdout)
    return json.loads(path.read_text())


# ---------------------------------------------------------------- verification (a child)
# Published list prices, USD per million tokens (standard tier, short context), written here
# independently of the sidecar's catalogue: input, cached input, 5-minute cache write, 1-hour
# cache write, output (reasoning included).
LIST_PRICES = {
    "gpt-4o-mini-2024-07-18": ("0.15", "0.075", "0", "0", "0.60"),
    "gpt-4.1-mini-2025-04-14": ("0.40", "0.10", "0", "0", "1.60"),
    "claude-sonnet-4-5-20250929": ("3", "0.30", "3.75", "6", "15"),
    "claude-haiku-4-5-20251001": ("1", "0.10", "1.25", "2", "5"),
    "gemini-2.5-flash": ("0.30", "0.03", "0", "0", "2.50"),
}


def list_price_usd(e: dict):  # -> Decimal
    from decimal import Decimal

    p_in, p_cached, p_w5, p_w1h, p_out = (Decimal(x) for x in LIST_PRICES[e["model"]])
    w1h = e.get("cache_write_1h_input_tokens") or 0
    cached, write = e["cached_input_tokens"], e["cache_write_input_tokens"]
    uncached = e["input_tokens"] - cached - write
    usd = uncached * p_in + cached * p_cached + (write - w1h) * p_w5 + w1h * p_w1h
    return (usd + e["output_tokens"] * p_out) / 1_000_000


def verify(truth_path: Path, events_path: Path, kind: str) -> dict:
    """Compare events with the truth; kind: file (bare events), hec or naive (server lines)."""
    import collections

    import orjson

    truth = orjson.loads(truth_path.read_bytes())
    found: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    seen: set[str] = set()
    n = cost_checked = 0

    def bad(what: str, rid: str) -> None:
        found[what] += 1
        examples.setdefault(what, rid)

    with open(events_path, "rb") as fh:
        for line in fh:
            e = orjson.loads(line)
            if kind != "file":
                e = e["event"]["event"]
            n += 1
            rid = e["request_id"]
            if rid in seen:
                bad("duplicate", rid)
                continue
            seen.add(rid)
            t = truth.get(rid)
            if t is None:
                bad("unexpected", rid)
                continue
            if (e["status"], e["http_status"]) != (t["status"], t["http_status"]):
                bad("status", rid)
            if t["model"] is not None and e["model"] != t["model"]:
                bad("model", rid)
            if kind != "naive" and e["tokens_estimated"] != t["tokens_estimated"]:
                bad("tokens_estimated", rid)
            if t["output_tokens"] is not None:
                if [e[f] for f in TOKEN_FIELDS] != [t[f] for f in TOKEN_FIELDS]:
                    bad("tokens", rid)
                elif kind != "naive":
                    cost_checked += 1
                    want = round(list_price_usd(e) * 10**9)
                    got = e["estimated_cost_usd"]
                    if got is None or round(got * 10**9) != want or e["cost_status"] != "priced":
                        bad("cost", rid)
    missing = len(set(truth) - seen)
    if missing:
        found["missing"] = missing
    return {
        "events": n,
        "truth": len(truth),
        "cost_checked": cost_checked,
        "problems": dict(found),
        "examples": examples,
        "exact": not found,
    }


# ---------------------------------------------------------------- measuring
@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mib: float
    server_cpu: float | None = None
    output: Path | None = None


@dataclass
class Case:
    name: str
    reads: str  # "both" logs or the "body" log only
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]
        return statistics.median(values) if values else None


# (measured child's core, HEC server's core), or None: set by main() from --no-pin
PIN: tuple[int, int] | None = None


def pin_cores() -> tuple[int, int] | None:
    """Two distinct cores this process may use (the first two), or None when there is one."""
    cores = sorted(os.sched_getaffinity(0))
    return (cores[0], cores[1]) if len(cores) >= 2 else None


def on_core(core: int | None):  # -> Callable[[], None] | None, a Popen preexec_fn
    return None if core is None else lambda: os.sched_setaffinity(0, {core})


def measure(argv: list[str], *, stdout=subprocess.DEVNULL, env: dict | None = None) -> Sample:
    """Run one child to its end: wall, CPU (user + system) and peak RSS from wait4."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
        preexec_fn=on_core(PIN[0] if PIN else None),
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} exited {proc.returncode}: {err.decode()[-3000:]}")
    return Sample(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)


class HecServer:
    """The HEC test server in its own process, on a free port of 127.0.0.1."""

    def __init__(self, out: Path) -> None:
        self.out = out
        argv = ["--port=0", f"--token={TOKEN}", f"--out={out}", "--times"]
        self.proc = subprocess.Popen(
            [PY, "-m", "sidecar.testing", *argv],
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            preexec_fn=on_core(PIN[1] if PIN else None),
        )
        assert self.proc.stderr is not None
        banner = self.proc.stderr.readline()
        if " on http://" not in banner:
            raise RuntimeError(f"the HEC test server did not start: {banner}")
        self.url = banner.split(" on ", 1)[1].split()[0].split("/services")[0]

    def stop(self) -> float:
        """Stop it (SIGTERM: it closes its file); returns its CPU seconds."""
        self.proc.send_signal(signal.SIGTERM)
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return ru.ru_utime + ru.ru_stime


def sidecar_config(tmp: Path, logs: Path, sink: dict) -> Path:
    cfg = {
        "sources": [
            {
                "name": "proxy",
                "access_log": {"paths": [str(logs / "access.log")]},
                "body_log": {"paths": [str(logs / "body.log")]},
            }
        ],
        "identity": {"hash_key": "bench-key"},
        "state_dir": str(tmp / "state"),
        "sinks": [sink],
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
    return n


def run_case(name: str, logs: Path, tmp: Path, keep: bool) -> tuple[Sample, int | None]:
    """One measurement; returns it and the events delivered (None for the floors)."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    access, body = logs / "access.log", logs / "body.log"
    sidecar = [PY, "-m", "sidecar.cli", "run", "--once", "-c"]
    if name == "start-up":
        empty = tmp / "empty"
        empty.mkdir()
        (empty / "access.log").touch()
        (empty / "body.log").touch()
        cfg = sidecar_config(tmp, empty, {"type": "file", "path": str(tmp / "events.ndjson")})
        return measure([*sidecar, str(cfg)]), None
    if name == "sidecar file":
        out = tmp / "events.ndjson"
        cfg = sidecar_config(tmp, logs, {"type": "file", "path": str(out)})
        sample = measure([*sidecar, str(cfg)])
        sample.output = out if keep else None
        return sample, count_lines(out)
    if name in ("sidecar hec", "naive"):
        server = HecServer(tmp / "accepted.ndjson")
        try:
            if name == "naive":
                argv = [PY, str(REPO / "bench" / "naive_shipper.py"), str(access), str(body)]
                sample = measure([*argv, server.url, TOKEN])
            else:
                hec = {"type": "hec", "endpoints": [server.url], "token": TOKEN}
                cfg = sidecar_config(tmp, logs, {**hec, "compression": "gzip"})
                sample = measure([*sidecar, str(cfg)])
        finally:
            sample_server = server.stop()
        sample.server_cpu = sample_server
        sample.output = server.out if keep else None
        return sample, count_lines(server.out)
    if name in ("json floor", "orjson floor"):
        code = LOADS_LOOP.format(mod=name.split()[0])
        return measure([PY, "-c", code, str(body)]), None
    if name == "cat":
        return measure(["cat", str(access), str(body)]), None
    raise ValueError(name)


# ---------------------------------------------------------------- report
def report(cases: dict[str, Case], st: dict, repeat: int) -> None:
    lines, requests = st["body_lines"], st["requests"]
    both_mb = (st["access_bytes"] + st["body_bytes"]) / 1e6
    body_mb = st["body_bytes"] / 1e6
    naive = cases.get("naive")
    n_cpu = naive.median("cpu") if naive else None
    n_wall = naive.median("wall") if naive else None
    print(
        f"\nmedians of {repeat} interleaved runs; rates per wall second unless said; "
        "x naive = naive's seconds / this case's seconds"
    )
    head = (
        f"{'case':<14}{'wall s':>8}{'CPU s':>8}{'RSS MiB':>8}{'req/s':>9}{'lines/s':>12}"
        f"{'MB/s':>7}{'lines/CPU-s':>12}{'x naive CPU':>12}{'x naive wall':>13}{'server CPU s':>13}"
    )
    print(head)
    for c in cases.values():
        wall, cpu, rss = c.median("wall"), c.median("cpu"), c.median("rss_mib")
        assert wall is not None and cpu is not None and rss is not None
        server = c.median("server_cpu")
        if c.name == "start-up":
            print(f"{c.name:<14}{wall:>8.3f}{cpu:>8.3f}{rss:>8.1f}   (run --once, empty logs)")
            continue
        mb = both_mb if c.reads == "both" else body_mb
        req = f"{requests / wall:>9,.0f}" if c.reads == "both" else f"{'':>9}"
        x_cpu = f"{n_cpu / cpu:>11.2f}x" if n_cpu else f"{'':>12}"
        x_wall = f"{n_wall / wall:>12.2f}x" if n_wall else f"{'':>13}"
        srv = f"{server:>13.2f}" if server is not None else ""
        print(
            f"{c.name:<14}{wall:>8.2f}{cpu:>8.2f}{rss:>8.1f}{req}{lines / wall:>12,.0f}"
            f"{mb / wall:>7.0f}{lines / max(cpu, 1e-9):>12,.0f}{x_cpu}{x_wall}{srv}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--concurrency", type=int, default=50, help="generator: requests in flight")
    ap.add_argument("--chunk-scale", type=float, default=1.0, help="generator: events per stream")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}"
    )
    ap.add_argument("--no-verify", action="store_true", help="skip the truth comparison")
    ap.add_argument(
        "--no-pin", action="store_true", help="do not pin the measured child and the server"
    )
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:  # data work runs in children, so that this process stays small
        if a.child[0] == "stats":
            print(json.dumps(stats(Path(a.child[1]))))
        else:
            print(json.dumps(verify(Path(a.child[1]), Path(a.child[2]), a.child[3])))
        return 0
    names = [n.strip() for n in a.cases.split(",") if n.strip()]
    unknown = set(names) - set(CASES)
    if unknown:
        ap.error(f"unknown cases {sorted(unknown)}; known: {', '.join(CASES)}")
    logs = data_dir(a.requests, a.seed, a.concurrency, a.chunk_scale)
    st = data_stats(logs)
    global PIN
    PIN = None if a.no_pin else pin_cores()
    if PIN:
        print(f"pinned: each measured child on core {PIN[0]}, the HEC test server on {PIN[1]}")
    print(
        f"data: {logs.name}: {st['requests']:,} requests, {st['body_lines']:,} body lines, "
        f"{(st['access_bytes'] + st['body_bytes']) / 1e6:,.0f} MB "
        f"(body {st['body_bytes'] / 1e6:,.0f} MB); body lines per request median "
        f"{st['lines_per_request_median']:g}, p95 {st['lines_per_request_p95']}; "
        f"{st['in_flight_mean']:.1f} requests in flight on average; providers "
        + ", ".join(f"{k} {v}%" for k, v in sorted(st["providers_pct"].items())),
        flush=True,
    )
    reads = {"json floor": "body", "orjson floor": "body"}
    cases = {n: Case(n, reads.get(n, "both")) for n in names}
    kept: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as td:
        root = Path(td)
        for r in range(a.repeat):
            for name in names:
                keep = r == 0 and not a.no_verify and name in KEPT
                sample, delivered = run_case(name, logs, root / "run", keep)
                cases[name].samples.append(sample)
                if delivered is not None and delivered != st["requests"]:
                    raise RuntimeError(f"{name}: {delivered} events for {st['requests']} requests")
                if sample.output is not None:
                    kept[name] = root / f"kept-{len(kept)}"
                    sample.output.rename(kept[name])
                print(
                    f"  round {r + 1}/{a.repeat} {name:<13} wall {sample.wall:7.2f} s, "
                    f"CPU {sample.cpu:7.2f} s, peak RSS {sample.rss_mib:6.1f} MiB",
                    flush=True,
                )
        report(cases, st, a.repeat)
        for name, path in kept.items():
            kind = {"sidecar file": "file", "sidecar hec": "hec", "naive": "naive"}[name]
            out = subprocess.run(
                [PY, __file__, "--child", "verify", str(logs / "truth.json"), str(path), kind],
                check=True,
                capture_output=True,
            )
            res = json.loads(out.stdout)
            what = "exact" if res["exact"] else f"MISMATCH {res['problems']} e.g. {res['examples']}"
            cost = f", cost checked on {res['cost_checked']:,}" if kind != "naive" else ""
            print(
                f"truth check, {name}: {res['events']:,} events for {res['truth']:,} requests"
                f"{cost}: {what}"
            )
    print_own_peak()
    return 0


def print_own_peak() -> None:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this process's peak RSS {own:.0f} MiB: a child's peak RSS reads at least that)")


if __name__ == "__main__":
    sys.exit(main())

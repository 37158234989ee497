"""Start-up time and memory, each in fresh subprocesses, next to baselines from the same run.

    .venv/bin/python bench/bench_startup.py [--repeat 5]

Each case runs `--repeat` times after one warm-up round, interleaved with the others (the machine
is noisy); the figures are medians of wall time, CPU time (user + system, `os.wait4`) and peak RSS
(VmHWM) of the child. Children cache bytecode under a temporary PYTHONPYCACHEPREFIX, as an
installed package would (`--no-bytecode` measures compiling every module from source instead):

- baseline:         `python -c pass` (the interpreter alone);
- genai-prices:     `import genai_prices` alone (what loading the catalogue eagerly costs);
- import pipeline:  `import sidecar.pipeline`;
- price, snapshot:  build a `PricingEngine` and price one gpt-4o-mini event (the default: the
                    compact catalogue snapshot, no genai-prices import);
- price, genai:     the same with the snapshot disabled (genai-prices' own catalogue, as before);
- run --once:       `llm-hec-sidecar run --once` to a file sink on a tiny log pair taken from
                    examples/logs: empty logs (the fixed cost); 2 OpenAI JSON responses with
                    usage (nothing to count: no tokenizer is loaded); 2 OpenAI streams with usage
                    (the first complete streams are calibration samples: o200k_base is loaded);
                    the last once more with the price snapshot disabled.

"Disabled" points `sidecar.enrich.pricing.SNAPSHOT_PATH` at a missing file in the child, which
is exactly the fallback a stale snapshot takes. Every run's output is checked (the priced total,
two events in the file sink).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_e2e import sidecar_config  # bench/ is on sys.path when this file runs

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "examples" / "logs"
PY = sys.executable

# Peak RSS is read in the child (VmHWM at exit): a forked child's ru_maxrss starts from the
# parent's RSS, which would hide the interpreter's own baseline.
HWM = (
    "import atexit as _a, os as _o\n"
    "def _hwm():\n"
    "    for _l in open('/proc/self/status'):\n"
    "        if _l.startswith('VmHWM:'):\n"
    "            _o.write(2, ('\\nHWM_KB ' + _l.split()[1] + '\\n').encode())\n"
    "_a.register(_hwm)\n"
)
NO_SNAPSHOT = (
    "import pathlib, sidecar.enrich.pricing as _p\n"
    "_p.SNAPSHOT_PATH = pathlib.Path('/nonexistent')\n"
)
PRICE_ONE = (
    "from sidecar.config import Pricing\n"
    "from sidecar.enrich.pricing import PricingEngine\n"
    "from sidecar.types import Usage\n"
    "e = PricingEngine(Pricing())\n"
    "c = e.price(provider='openai', model='gpt-4o-mini', usage=Usage(1000, 0, 0, 0, 100, 0),"
    " at=1.7e9)\n"
    "assert c.total_nusd == 210000, c\n"
)
RUN_ONCE = "import sys\nfrom sidecar.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def tiny_logs(tmp: Path, streams: bool | None) -> Path:
    """Two OpenAI requests with usage from the examples (streams or JSON responses; None: no
    request at all), and a config with a file sink."""
    tmp.mkdir()
    truth = json.loads((LOGS / "truth.json").read_text())
    ids = [
        rid
        for rid, t in truth.items()
        if t["provider"] == "openai"
        and t["status"] == "ok"
        and t.get("output_tokens")
        and t["is_streaming"] == streams
    ][:2]
    for name in ("access.log", "body.log"):
        lines = [
            line
            for line in (LOGS / name).read_bytes().splitlines(keepends=True)
            if any(rid.encode() in line for rid in ids)
        ]
        (tmp / name).write_bytes(b"".join(lines))
    return sidecar_config(tmp, tmp, {"type": "file", "path": str(tmp / "events.ndjson")})


def measure(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one child process; raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    hwm = [line for line in err.decode().splitlines() if line.startswith("HWM_KB ")]
    return wall, ru.ru_utime + ru.ru_stime, int(hwm[-1].split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--no-bytecode",
        action="store_true",
        help="compile every module from source each run (as with PYTHONDONTWRITEBYTECODE=1 and "
        "no __pycache__); by default bytecode is cached in a temporary prefix, as installed",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as d:
        tmp = Path(d)
        runs = {
            what: ["run", "--once", "-c", str(tiny_logs(tmp / what, streams))]
            for what, streams in (("empty", None), ("json", False), ("streams", True))
        }
        run = runs["streams"]
        cases = {
            "baseline: python -c pass": [PY, "-c", HWM + "pass"],
            "import genai_prices (alone)": [PY, "-c", HWM + "import genai_prices"],
            "import sidecar.pipeline": [PY, "-c", HWM + "import sidecar.pipeline"],
            "engine + price 1 event (snapshot)": [PY, "-c", HWM + PRICE_ONE],
            "engine + price 1 event (genai-prices)": [PY, "-c", HWM + NO_SNAPSHOT + PRICE_ONE],
            "run --once, empty logs": [PY, "-c", HWM + RUN_ONCE, *runs["empty"]],
            "run --once, 2 JSON responses": [PY, "-c", HWM + RUN_ONCE, *runs["json"]],
            "run --once, 2 streams (snapshot)": [PY, "-c", HWM + RUN_ONCE, *run],
            "run --once, 2 streams (genai-prices)": [
                *(PY, "-c", HWM + NO_SNAPSHOT + RUN_ONCE),
                *run,
            ],
        }
        expected = {"empty": 0, "json": 2, "streams": 2}
        env = dict(os.environ)
        if args.no_bytecode:
            env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(tmp / "no-pycache"))
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cases}
        for i in range(args.repeat + 1):  # the first round is a warm-up (bytecode, page cache)
            for name, argv in cases.items():
                for what in runs:
                    for p in (tmp / what / "events.ndjson", tmp / what / "state"):
                        if p.is_file():
                            p.unlink()
                        elif p.is_dir():
                            subprocess.run(["rm", "-rf", str(p)], check=True)
                sample = measure(argv, REPO, env)
                if i:
                    samples[name].append(sample)
                for what, want in expected.items():
                    events = tmp / what / "events.ndjson"
                    if runs[what][-1] in argv:
                        n = len(events.read_bytes().splitlines()) if events.exists() else 0
                        assert n == want, f"{name}: {n} events, expected {want}"

    def medians(rows: list[tuple[float, float, float]]) -> list[float]:
        return [statistics.median(col) for col in zip(*rows, strict=True)]

    b_wall, _, b_rss = medians(samples["baseline: python -c pass"])
    cache = "no bytecode cache" if args.no_bytecode else "bytecode cached"
    print(f"median of {args.repeat} interleaved runs, {cache} (python {sys.version.split()[0]})")
    print(f"{'case':40} {'wall s':>7} {'CPU s':>6} {'RSS MiB':>8} {'wall-base':>9} {'RSS-base':>8}")
    for name, rows in samples.items():
        wall, cpu, rss = medians(rows)
        print(
            f"{name:40} {wall:7.3f} {cpu:6.3f} {rss:8.1f} {wall - b_wall:+9.3f} {rss - b_rss:+8.1f}"
        )


if __name__ == "__main__":
    main()

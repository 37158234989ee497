"""Loading one bundled tiktoken encoding, alone, each load in a fresh process.

    .venv/bin/python bench/bench_tokenizer_load.py [--repeat 7] [--encoding o200k_base]
        [--python OTHER/.venv/bin/python ...]

Each child imports `sidecar.enrich.tokenizer`, then loads the encoding with `get_encoder` and
reports the load's CPU seconds (user and system, `resource.getrusage` of the process around the
call), the RSS high-water mark it adds (VmHWM after the load minus VmHWM before it), the RSS
left after the load, and, in a separate child, the peak of Python allocations during the load
(`tracemalloc`; the Rust core's own maps are not in it). Every interpreter given with `--python`
(another tree's virtualenv: it imports that tree's package) runs interleaved with this one, one
child each per round; the figures are medians. The child checks a count, so a load that fell
back to the heuristic fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, tracemalloc
from sidecar.enrich import tokenizer as tk

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

name, traced = sys.argv[1], sys.argv[2] == "1"
if traced:
    tracemalloc.start()
hwm0 = status("VmHWM")
r0 = resource.getrusage(resource.RUSAGE_SELF)
enc = tk.get_encoder(name)
r1 = resource.getrusage(resource.RUSAGE_SELF)
assert enc is not None and len(enc.encode_ordinary("Hello world!")) == 3, "not loaded"
out = {
    "cpu": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
    "user": r1.ru_utime - r0.ru_utime,
    "sys": r1.ru_stime - r0.ru_stime,
    "hwm_added": status("VmHWM") - hwm0,
    "rss_after": status("VmRSS"),
}
if traced:
    out = {"py_peak": tracemalloc.get_traced_memory()[1] / 2**20}
print(json.dumps(out))
"""


def child(python: str, name: str, traced: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [python, "-c", CHILD, name, "1" if traced else "0"],
        env=env,
        cwd=tempfile.gettempdir(),  # not a tree's folder: each interpreter imports its own package
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--encoding", default="o200k_base")
    ap.add_argument("--python", action="append", default=[], help="another interpreter")
    args = ap.parse_args()
    pythons = [sys.executable, *args.python]
    rows: dict[str, list[dict[str, float]]] = {p: [] for p in pythons}
    for p in pythons:  # warm-up: bytecode, page cache
        child(p, args.encoding, False)
    for _ in range(args.repeat):
        for p in pythons:
            rows[p].append(child(p, args.encoding, False) | child(p, args.encoding, True))
    print(f"{args.encoding}: medians of {args.repeat} interleaved fresh processes")
    print(
        f"{'CPU s':>6} {'user':>6} {'sys':>6} {'HWM+ MiB':>9} {'RSS MiB':>8} {'py peak':>8}  python"
    )
    for p, got in rows.items():
        med = {k: statistics.median(r[k] for r in got) for k in got[0]}
        print(
            f"{med['cpu']:6.3f} {med['user']:6.3f} {med['sys']:6.3f} "
            f"{med['hwm_added']:9.1f} {med['rss_after']:8.1f} {med['py_peak']:8.1f}  {p}"
        )


if __name__ == "__main__":
    main()

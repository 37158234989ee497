"""Start-up loads only what a run needs (issue 14), checked in real `run --once` processes: no
tiktoken encoding until something must be counted, then only the one the model uses; no aiohttp
(and its SSL contexts) without an HEC sink; the command line imports only the chosen command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.logs import file_sink_config

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "examples" / "logs"

# Runs the CLI, then reports what the process loaded.
PROBE = """
import json, sys
from sidecar.cli import main
code = main(sys.argv[1:])
from sidecar.enrich import tokenizer
print(json.dumps({
    "code": code,
    "encoders": tokenizer.encoder_states(str(tokenizer.BUNDLED_DIR)),
    "aiohttp": "aiohttp" in sys.modules,
    "splunklib": "splunklib" in sys.modules,
}))
"""


def two_requests(tmp: Path, streams: bool) -> Path:
    """Two OpenAI requests with usage from the example logs, and a file-sink config."""
    truth = json.loads((LOGS / "truth.json").read_text())
    ids = [
        rid
        for rid, t in truth.items()
        if t["provider"] == "openai" and t["status"] == "ok" and t["is_streaming"] == streams
    ][:2]
    for name in ("access.log", "body.log"):
        lines = (LOGS / name).read_bytes().splitlines(keepends=True)
        (tmp / name).write_bytes(b"".join(x for x in lines if any(r.encode() in x for r in ids)))
    return file_sink_config(tmp, tmp)


def probe(cfg: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "run", "--once", "-c", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_nothing_to_count_loads_no_tokenizer_and_no_aiohttp(tmp_path: Path) -> None:
    got = probe(two_requests(tmp_path, streams=False))
    assert got["code"] == 0
    assert len((tmp_path / "events.ndjson").read_bytes().splitlines()) == 2
    assert set(got["encoders"].values()) == {"not_loaded"}, got
    assert not got["aiohttp"] and not got["splunklib"], got


@pytest.mark.parametrize("calibrate", [True, False])
def test_a_stream_loads_only_the_encoding_its_model_uses(tmp_path: Path, calibrate: bool) -> None:
    cfg = two_requests(tmp_path, streams=True)
    if not calibrate:  # nothing to learn from and nothing to estimate: nothing to count
        cfg = file_sink_config(tmp_path, tmp_path, tokens={"calibrate": False})
    got = probe(cfg)
    assert len((tmp_path / "events.ndjson").read_bytes().splitlines()) == 2
    # gpt-4o-mini and gpt-4.1-mini count with o200k_base; cl100k_base is never needed
    want = "tiktoken" if calibrate else "not_loaded"
    assert got["encoders"] == {"o200k_base": want, "cl100k_base": "not_loaded"}, got
    assert not got["aiohttp"], got


def test_command_line_imports_only_the_chosen_command() -> None:
    code = (
        "import sys\nfrom sidecar.cli import build_parser, _chosen_command\n"
        "p = build_parser(_chosen_command(['-v', 'run', '--once']))\n"
        "a = p.parse_args(['-v', 'run', '--once'])\n"
        "print(a.command, a.once, 'aiohttp' in sys.modules, 'splunklib' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["run", "True", "False", "False"]
    # every command is still listed, and a lazy command parses its own options
    helps = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "--help"], cwd=REPO, capture_output=True, text=True
    )
    for name in ("run", "validate", "usage", "price", "splunk", "init", "check"):
        assert name in helps.stdout
    price = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "price", "--model=gpt-4o-mini", "--input=1000"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert price.returncode == 0, price.stderr
    assert "gpt-4o-mini" in price.stdout

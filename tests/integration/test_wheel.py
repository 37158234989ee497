"""The wheel carries what a host needs: built from the repository, installed into a fresh
virtualenv in a temporary folder, it runs `init` (config + systemd unit from package data) and
then `run --once` on a small log pair.

To stay fast and offline the fresh virtualenv gets its third-party dependencies from the test
environment's site-packages (a .pth file) and the wheel itself is installed with `--no-deps
--no-index`, so the `sidecar` package it runs is the wheel's, never the source tree's.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "examples" / "logs"

pytestmark = pytest.mark.slow


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_installs_and_runs_on_a_host(tmp_path: Path) -> None:
    # Build from a copy of what the build reads, so the work tree gets no build/ or egg-info.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "sidecar", src / "sidecar", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)])
    (wheel,) = dist.glob("llm_hec_sidecar-*.whl")
    # With a compiler (here if the test environment's install built them) the wheel carries the
    # hot path's C extensions (setup.py; without one they are optional and the wheel is pure).
    built = importlib.util.find_spec("sidecar.parse._bodyscan") is not None
    with zipfile.ZipFile(wheel) as zf:
        exts = sorted(n.split("/")[-1].split(".")[0] for n in zf.namelist() if n.endswith(".so"))
    assert exts == (
        [
            "_accessscan",
            "_bodylines",
            "_bodyscan",
            "_ratelimit",
            "_splitlines",
            "_tailscan",
            "_textscan",
        ]
        if built
        else []
    )

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(
        run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    (site / "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    exe = env_dir / "bin" / "llm-hec-sidecar"
    assert exe.exists()

    host = tmp_path / "host"
    host.mkdir()
    # A small log pair: the first 20 requests of the example logs.
    access = (LOGS / "access.log").read_bytes().splitlines()[:20]
    ids = {orjson.loads(x)["request_id"] for x in access}
    body = [
        x
        for x in (LOGS / "body.log").read_bytes().splitlines()
        if orjson.loads(x)["request_id"] in ids
    ]
    (host / "access.log").write_bytes(b"\n".join(access) + b"\n")
    (host / "body.log").write_bytes(b"\n".join(body) + b"\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CREDENTIALS_DIRECTORY")}
    env["STATE_DIRECTORY"] = str(host / "state")
    where = run([str(py), "-c", "import sidecar; print(sidecar.__file__)"], cwd=host, env=env)
    assert where.stdout.strip().startswith(str(env_dir)), where.stdout
    code = "from sidecar.parse import body; print(body.NATIVE)"
    native = run([str(py), "-c", code], cwd=host, env={**env, "LLM_HEC_SIDECAR_PURE": ""})
    assert native.stdout.strip() == str(built)

    run(
        [
            str(exe),
            "init",
            "--proxy",
            "nginx",
            "--access-log",
            str(host / "access.log"),
            "--body-log",
            str(host / "body.log"),
            "--start-at",
            "beginning",
            "--systemd",
            str(host / "units"),
        ],
        cwd=host,
        env=env,
    )
    unit = (host / "units" / "llm-hec-sidecar.service").read_text()
    assert "Type=notify" in unit
    run([str(exe), "validate", "-c", "config.yaml"], cwd=host, env=env)
    out = run([str(exe), "run", "--once", "-c", "config.yaml"], cwd=host, env=env)
    assert "total" in out.stdout
    events = [orjson.loads(x) for x in (host / "state" / "events.ndjson").read_bytes().splitlines()]
    assert {e["request_id"] for e in events} == ids
    assert all(e["schema"] == "llm_usage/1" for e in events)

"""Splunk AppInspect on the packaged app, cloud checks included: no failure, error or warning.

`splunk-appinspect` pins its dependencies exactly, so it lives in its own virtualenv
(`.venv-appinspect`, made by .ci/run; made here when missing). It needs Debian's libmagic1.
Its exit code is 0 even with failures, so the test reads the JSON report's summary.
Skipped locally only when AppInspect cannot be installed; under CI (CI=true) that fails.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from sidecar.commands.splunk import build
from tests.conftest import REPO

pytestmark = pytest.mark.slow

VENV = Path(os.environ.get("APPINSPECT_VENV", REPO / ".venv-appinspect"))
REQUIREMENTS = REPO / "tests" / "appinspect-requirements.txt"
BAD = ("failure", "error", "warning", "future_failure")


def _appinspect() -> Path:
    exe = VENV / "bin" / "splunk-appinspect"
    if not exe.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
            subprocess.run(
                [str(VENV / "bin" / "pip"), "install", "-q", "-r", str(REQUIREMENTS)],
                check=True,
                timeout=280,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"splunk-appinspect cannot be installed under CI: {exc}")
            pytest.skip(f"splunk-appinspect cannot be installed here: {exc}")
    return exe


def _inspect(package: Path, out: Path) -> dict:
    cmd = [
        str(_appinspect()), "inspect", str(package), "--mode", "test",
        "--included-tags", "cloud", "--included-tags", "splunk_appinspect",
        "--skip-trusted-libraries-update", "--data-format", "json",
        "--output-file", str(out), "--max-messages", "all",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    if not out.exists():
        pytest.fail(f"AppInspect wrote no report (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def _problems(report: dict) -> list[str]:
    out = []
    for r in report["reports"]:
        for group in r["groups"]:
            for check in group["checks"]:
                if check["result"] in BAD:
                    msgs = "; ".join(m["message"][:300] for m in check["messages"])
                    out.append(f"{check['result']} {check['name']}: {msgs}")
    return out


def test_the_packaged_app_passes_appinspect_with_cloud_checks(tmp_path: Path) -> None:
    pkg = build(REPO / "dashboards" / "llm_usage", tmp_path)
    report = _inspect(pkg.path, tmp_path / "appinspect.json")
    summary = report["summary"]
    print("AppInspect summary:", json.dumps(summary, sort_keys=True))
    assert summary["success"] > 50, summary  # the checks ran
    assert all(summary.get(k, 0) == 0 for k in BAD), "\n".join(_problems(report))


TRAPS = {
    "dot_slash": "check_that_extracted_splunk_app_does_not_contain_prohibited_directories_or_files",
    "dotfile": "check_that_splunk_app_package_does_not_contain_files_outside_of_app",
    "exec_bit": "check_for_bin_files",
    "local": "check_that_local_does_not_exist",
    "semver": "check_version_is_valid_semver",
    "dashboard_version": "check_simplexml_standards_version",
    "earliest": "check_for_sched_saved_searches_earliest_time",
}


def _trap_package(trap: str, out: Path) -> None:
    """The app as a tarball with one known mistake (built by hand: our builder refuses them)."""
    src = REPO / "dashboards" / "llm_usage"
    prefix = "./llm_usage" if trap == "dot_slash" else "llm_usage"
    with tarfile.open(out, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            info = tarfile.TarInfo(f"{prefix}/{rel}")
            info.mode = (
                0o755
                if path.is_dir() or (trap, rel) == ("exec_bit", "default/props.conf")
                else 0o644
            )
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            data = path.read_bytes()
            if (trap, rel) == ("semver", "default/app.conf"):
                data = data.replace(b"version = 0.1.0", b"version = 1.0 beta")
            if (trap, rel) == ("dashboard_version", "default/data/ui/views/overview.xml"):
                data = data.replace(b' version="1.1"', b"")
            if (trap, rel) == ("earliest", "default/savedsearches.conf"):
                data = data.replace(b"dispatch.earliest_time = @d\n", b"", 1)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        extra = {"dotfile": "llm_usage/.env", "local": "llm_usage/local/app.conf"}.get(trap)
        if extra:
            info = tarfile.TarInfo(extra)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"x\n"))


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_appinspect_fails_each_known_trap(tmp_path: Path, trap: str) -> None:
    """The gate is real: each known mistake fails, judged by the JSON report, not the exit code."""
    pkg = tmp_path / "llm_usage-trap.tar.gz"
    _trap_package(trap, pkg)
    report = _inspect(pkg, tmp_path / "trap.json")
    assert report["summary"]["failure"] > 0
    failed = {line.split(":")[0].split()[1] for line in _problems(report)}
    assert TRAPS[trap] in failed, sorted(failed)

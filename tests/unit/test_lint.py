"""The tree stays `ruff` clean (lint and format), so CI enforces it with the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    return subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_ruff_check() -> None:
    proc = ruff("check", ".")
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_ruff_format() -> None:
    proc = ruff("format", "--check", ".")
    assert proc.returncode == 0, proc.stdout[-3000:]

"""The console entry point: subcommands reachable, exit codes as documented."""

from __future__ import annotations

import subprocess
import sys

import orjson


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_price_through_the_main_cli() -> None:
    proc = cli("price", "--model", "gpt-4o-2024-08-06", "--input", "1000000", "--output", "0")
    assert proc.returncode == 0, proc.stderr
    row = orjson.loads(proc.stdout)
    assert row["pricing_model"] == "gpt-4o" and row["cost_status"] == "priced"
    assert row["cost_input_usd"] == 2.5 and row["estimated_cost_usd"] == 2.5


def test_unknown_model_is_not_a_silent_zero() -> None:
    proc = cli("price", "--model", "no-such-model-x", "--input", "10", "--output", "1")
    assert proc.returncode == 0
    row = orjson.loads(proc.stdout)
    assert row["cost_known"] is False and row["estimated_cost_usd"] is None
    assert "no price for model 'no-such-model-x'" in proc.stderr


def test_help_lists_the_commands() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for cmd in ("run", "validate", "usage", "price"):
        assert cmd in proc.stdout

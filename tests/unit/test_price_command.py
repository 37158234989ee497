"""`llm-hec-sidecar price`: one JSON object per call, exit 0 even for an unknown model."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from sidecar.commands import price
from sidecar.config import Config, PriceOverride, Pricing


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    price.add_arguments(parser)
    return parser.parse_args(list(argv))


def _run(capsys: pytest.CaptureFixture[str], cfg: Config | None, *argv: str) -> dict:
    assert price.run(_args(*argv), cfg) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return orjson.loads(out)


def test_known_model_components_and_rates(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(
        capsys,
        None,
        "--model",
        "gpt-4o-2024-08-06",
        "--provider",
        "openai",
        "--input",
        "1600",
        "--cached-input",
        "1000",
        "--output",
        "500",
        "--reasoning",
        "100",
        "--at",
        "2026-11-01",
    )
    assert out["cost_input_usd"] == 0.0015  # 600 x $2.5/MTok
    assert out["cost_cached_input_usd"] == 0.00125
    assert out["cost_cache_write_usd"] == 0.0
    assert out["cost_output_usd"] == 0.005
    assert out["estimated_cost_usd"] == 0.00775
    assert out["rates"]["input_usd_per_mtok"] == "2.5"
    assert out["pricing_model"] == "gpt-4o"
    assert out["pricing_source"] == "genai-prices"
    assert out["pricing_version"].startswith("genai-prices ")
    assert out["cost_known"] is True and out["cost_status"] == "priced"
    assert out["at"] == "2026-11-01T00:00:00Z"


def test_service_tier_and_cache_write(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(
        capsys,
        None,
        "--model",
        "claude-haiku-4-5",
        "--provider",
        "anthropic",
        "--input",
        "2000000",
        "--cache-write",
        "1000000",
        "--output",
        "0",
        "--service-tier",
        "batch",
        "--at",
        "2026-11-01T10:00:00+00:00",
    )
    assert out["cost_input_usd"] == 0.5
    assert out["cost_cache_write_usd"] == 0.625
    assert out["estimated_cost_usd"] == 1.125


def test_unknown_model_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, None, "--model", "no-such-model-xyz", "--input", "10", "--output", "5")
    assert out["cost_known"] is False
    assert out["cost_status"] == "unpriced_model"
    assert out["estimated_cost_usd"] is None


def test_config_overrides_apply(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = Config(
        pricing=Pricing(
            aliases={"prod-deploy": "my-model"},
            overrides=[
                PriceOverride(model="my-model", input_usd_per_mtok="0.5", output_usd_per_mtok="1.5")
            ],
        )
    )
    out = _run(capsys, cfg, "--model", "prod-deploy", "--input", "2000000", "--output", "1000000")
    assert out["estimated_cost_usd"] == 2.5
    assert out["pricing_source"] == "override"


@pytest.mark.parametrize(
    "argv",
    [
        ("--model", "gpt-4o", "--input", "10", "--cached-input", "20"),
        ("--model", "gpt-4o", "--output", "10", "--reasoning", "20"),
        ("--model", "gpt-4o", "--input", "-1"),
        ("--model", "gpt-4o", "--at", "yesterday"),
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    assert price.run(_args(*argv), None) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "price:" in captured.err


def test_module_runs_as_a_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar.commands.price",
            "--model",
            "gemini-2.5-pro",
            "--provider",
            "gemini",
            "--input",
            "300000",
            "--output",
            "1000",
            "--at",
            "2026-11-01",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout)
    assert out["estimated_cost_usd"] == 0.765  # 300k x $2.5 + 1k x $15 (above the 200k tier)
    assert out["rates"]["tier_above_input_tokens"] == 200000


def test_one_hour_cache_writes_are_priced_apart(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(
        capsys,
        None,
        "--model",
        "claude-sonnet-4-5",
        "--input",
        "100000",
        "--cache-write",
        "100000",
        "--cache-write-1h",
        "40000",
        "--output",
        "0",
        "--at",
        "2026-11-01T10:00:00+00:00",
    )
    rates = out["rates"]
    assert out["cache_write_1h_input_tokens"] == 40000
    assert out["cost_cache_write_1h_usd"] == 0.04 * float(rates["cache_write_1h_usd_per_mtok"])
    five_min = 0.06 * float(rates["cache_write_usd_per_mtok"])
    assert abs(out["cost_cache_write_usd"] - out["cost_cache_write_1h_usd"] - five_min) < 1e-9

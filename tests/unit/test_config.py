from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sidecar import config
from sidecar.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
MIN = {"sources": [{"access_log": {"paths": ["a.log"]}}]}


def err(data: dict, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        config.from_dict(data, env=env or {})
    return str(exc.value)


def test_shipped_config_is_valid_and_uses_the_examples() -> None:
    cfg = config.load(REPO / "config.yaml", env={})
    assert cfg.sources[0].access_log.paths == ["examples/logs/access.log"]
    assert isinstance(cfg.sinks[0], config.FileSink)
    assert cfg.resolve("x") == str(REPO / "x")


def test_unknown_key_names_its_path_and_suggests() -> None:
    data = {
        **MIN,
        "sinks": [
            {"type": "hec", "endpoints": ["https://h:8088"], "token": "t", "batch": {"max_byte": 1}}
        ],
    }
    assert err(data) == "sinks[0].batch.max_byte: unknown key; did you mean max_bytes?"


def test_wrong_type_names_key_and_expected_type() -> None:
    assert err({**MIN, "join": {"expire_after_secs": "soon"}}) == (
        "join.expire_after_secs: expected a number, got 'soon'"
    )
    assert "expected true or false" in err({**MIN, "tokens": {"calibrate": "yes"}})
    assert "sources[0].access_log.paths: expected a list" in err(
        {"sources": [{"access_log": {"paths": "a.log"}}]}
    )


def test_tagged_union_and_literal_suggestions() -> None:
    assert "sinks[0].type: 'hex' is not a known type; use one of: file, hec" in err(
        {**MIN, "sinks": [{"type": "hex"}]}
    )
    msg = err({"sources": [{"access_log": {"paths": ["a"], "format": {"type": "nginx_jsn"}}}]})
    assert "did you mean nginx_json?" in msg


def test_env_substitution_for_secrets() -> None:
    data = {**MIN, "sinks": [{"type": "hec", "endpoints": ["https://h:8088"], "token": "${TOK}"}]}
    cfg = config.from_dict(data, env={"TOK": "abc"})
    assert cfg.sinks[0].token == "abc"
    assert "environment variable TOK is not set" in err(data)
    data["sinks"][0]["token"] = "${TOK:-}"
    assert "sinks[0].token: the HEC token is empty" in err(data)


def test_cross_field_rules() -> None:
    assert err({"sources": []}).startswith("sources: at least one source")
    assert "sinks[0].endpoints[0]" in err(
        {**MIN, "sinks": [{"type": "hec", "endpoints": ["splunk:8088"], "token": "t"}]}
    )
    assert "duplicate source name" in err({"sources": [MIN["sources"][0], MIN["sources"][0]]})


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "validate", "-c", str(REPO / "config.yaml")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - access_log: {paths: [a]}\njoin: {expire_after: 3}\n")
    res = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "validate", "-c", str(bad)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "join.expire_after: unknown key; did you mean expire_after_secs?" in res.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: [\n")
    res = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "validate", "-c", str(broken)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "not valid YAML" in res.stderr

"""`${credential:NAME}` in config.yaml: systemd credentials from $CREDENTIALS_DIRECTORY."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar import config
from sidecar.configload import substitute_env
from sidecar.errors import ConfigError


def creds(tmp_path: Path, **files: str) -> dict[str, str]:
    d = tmp_path / "creds"
    d.mkdir()
    for name, value in files.items():
        (d / name).write_text(value)
    return {"CREDENTIALS_DIRECTORY": str(d)}


def test_a_credential_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    env = creds(tmp_path, hec_token="abc-123\n")
    assert substitute_env({"t": "${credential:hec_token}"}, env) == {"t": "abc-123"}
    assert substitute_env("Splunk ${credential:hec_token}!", env) == "Splunk abc-123!"


def test_fallbacks_text_and_environment(tmp_path: Path) -> None:
    env = {**creds(tmp_path), "SPLUNK_HEC_TOKEN": "from-env"}
    assert substitute_env("${credential:hec_token:-${SPLUNK_HEC_TOKEN}}", env) == "from-env"
    assert substitute_env("${credential:hec_token:-${NOPE:-x}}", env) == "x"
    assert substitute_env("${credential:hec_token:-plain}", {}) == "plain"
    # A credential present wins over the fallback.
    (tmp_path / "b").mkdir()
    env2 = {**creds(tmp_path / "b", hec_token="cred"), "SPLUNK_HEC_TOKEN": "from-env"}
    assert substitute_env("${credential:hec_token:-${SPLUNK_HEC_TOKEN}}", env2) == "cred"


def test_a_credential_value_is_not_substituted_again(tmp_path: Path) -> None:
    env = creds(tmp_path, weird="${HOME}")
    assert substitute_env("${credential:weird}", env) == "${HOME}"


def test_missing_credential_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        substitute_env({"sinks": ["${credential:hec_token}"]}, creds(tmp_path))
    assert "credential hec_token not found" in str(e.value)
    assert "LoadCredential=hec_token:" in str(e.value)
    assert "sinks[0]" in str(e.value)
    with pytest.raises(ConfigError) as e:
        substitute_env("${credential:hec_token}", {})
    assert "CREDENTIALS_DIRECTORY is not set" in str(e.value)
    with pytest.raises(ConfigError, match="SPLUNK_HEC_TOKEN is not set"):
        substitute_env("${credential:hec_token:-${SPLUNK_HEC_TOKEN}}", {})


def test_a_whole_config_takes_its_token_and_key_from_credentials(tmp_path: Path) -> None:
    env = creds(tmp_path, hec_token="tok", hash_key="key")
    cfg = config.from_dict(
        {
            "sources": [{"access_log": {"paths": ["a.log"]}}],
            "identity": {"hash_key": "${credential:hash_key}"},
            "sinks": [
                {
                    "type": "hec",
                    "endpoints": ["https://splunk.example.com:8088"],
                    "token": "${credential:hec_token}",
                }
            ],
        },
        env=env,
    )
    assert cfg.sinks[0].token == "tok"
    assert cfg.identity.hash_key == "key"

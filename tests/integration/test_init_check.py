"""`init` (a config and the unit for a host) and `check` (live: HEC, token, index, logs, prices)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import orjson
import pytest

from sidecar import cli
from sidecar.commands.init import PRESETS
from sidecar.testing import HecTestServer, TokenSettings

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "examples" / "logs"
TOKEN = "check-token-0123"


@pytest.mark.parametrize("proxy", sorted(PRESETS))
def test_init_in_an_empty_folder_then_validate(
    proxy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("SPLUNK_HEC_TOKEN", raising=False)
    assert cli.main(["init", "--proxy", proxy]) == 0
    out = capsys.readouterr().out
    assert "Next steps" in out and "validate" in out and "SupplementaryGroups" in out
    assert cli.main(["validate", "-c", "config.yaml"]) == 0
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == 0o600
    # Writing again refuses to overwrite.
    assert cli.main(["init", "--proxy", proxy]) == 1
    # With HEC: the token comes from the credential, else the environment.
    monkeypatch.setenv("SPLUNK_HEC_TOKEN", "from-env")
    args = ["init", "--proxy", proxy, "--hec-url", "https://splunk.example.com:8088"]
    assert cli.main([*args, "--index", "llm", "-o", "hec.yaml"]) == 0
    assert cli.main(["validate", "-c", "hec.yaml"]) == 0
    from sidecar import config

    cfg = config.load("hec.yaml")
    assert cfg.sinks[0].token == "from-env" and cfg.sinks[0].index == "llm"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hec_token").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert config.load("hec.yaml").sinks[0].token == "from-credential"


def test_init_systemd_writes_the_packaged_unit(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--systemd", "units"]) == 0
    for name in ("llm-hec-sidecar.service", "llm-hec-sidecar.default"):
        assert (tmp_path / "units" / name).read_bytes() == (REPO / "systemd" / name).read_bytes()


def write_config(tmp_path: Path, url: str, access: Path, body: Path, index: str = "llm") -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
sources:
  - access_log: {{paths: [{access}]}}
    body_log: {{paths: [{body}]}}
sinks:
  - type: hec
    endpoints: [{url}]
    token: {TOKEN}
    index: {index}
"""
    )
    return cfg


def test_check_passes_and_sends_one_marked_test_event(tmp_path: Path, capsys) -> None:
    # Logs where an unprivileged service could read them (when this runs as root, check judges
    # by the mode bits of the file and of every folder above it).
    base = Path(tempfile.mkdtemp(prefix="logs"))
    os.chmod(base, 0o755)
    for name in ("access.log", "body.log"):
        shutil.copy(LOGS / name, base / name)
        os.chmod(base / name, 0o644)
    hec = HecTestServer(tokens={TOKEN: TokenSettings(indexes=["llm"])})
    url, stop = hec.run_in_thread()
    try:
        cfg = write_config(tmp_path, url, base / "access.log", base / "body.log")
        rc = cli.main(["check", "-c", str(cfg)])
    finally:
        stop()
        shutil.rmtree(base)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "token accepted" in out and "test event accepted into index llm" in out
    assert "model(s) seen are priced" in out
    assert len(hec.events) == 1
    ev = hec.events[0]
    assert ev["sourcetype"] == "llm:sidecar" and ev["index"] == "llm"
    assert ev["event"]["kind"] == "check" and ev["event"]["test"] is True


def test_check_names_each_failure_and_its_fix(tmp_path: Path, capsys) -> None:
    access = tmp_path / "access.log"
    body = tmp_path / "body.log"
    data = orjson.dumps({"id": "x", "model": "house-model-7b", "usage": {}}).decode()
    body.write_bytes(orjson.dumps({"ts": 1.0, "request_id": "r1", "data": data}) + b"\n")
    hec = HecTestServer(tokens={"other-token": TokenSettings()})
    url, stop = hec.run_in_thread()
    try:
        cfg = write_config(tmp_path, url, access, body)  # the access log does not exist
        rc = cli.main(["check", "-c", str(cfg)])
        out = capsys.readouterr().out
        # The token is fine but the index is not allowed for it.
        hec.tokens[TOKEN] = TokenSettings(indexes=["main"])
        rc2 = cli.main(["check", "-c", str(cfg)])
        out2 = capsys.readouterr().out
    finally:
        stop()
    assert rc == 1
    assert f"FAIL source proxy: no log file matches {access}" in out
    assert "FAIL pricing: no price for 'house-model-7b'" in out
    assert "pricing.overrides" in out
    assert (
        "FAIL HEC" in out
        and "token rejected (HTTP 403, code 4" in out
        and "check sinks[0].token" in out
    )
    assert hec.events == []
    assert rc2 == 1
    assert "test event refused" in out2 and "allow the index on the token" in out2


def test_check_judges_log_access_by_the_service_group_not_by_root() -> None:
    from sidecar.commands.check import service_can_read

    base = Path(tempfile.mkdtemp(prefix="perm"))  # under /tmp (1777): the rest is ours
    try:
        os.chmod(base, 0o755)
        logs = base / "logs"
        logs.mkdir()
        f = logs / "access.log"
        f.write_text("x\n")
        group = f.stat().st_gid  # the group the service would have
        stranger = group + 1  # a group the file does not belong to
        os.chmod(logs, 0o755)
        for mode, gid, ok in [
            (0o640, group, True),
            (0o640, stranger, False),
            (0o600, group, False),
            (0o644, stranger, True),
        ]:
            os.chmod(f, mode)
            assert service_can_read(str(f), gid) is ok, (oct(mode), gid)
        os.chmod(f, 0o644)
        os.chmod(logs, 0o700)  # a folder the group cannot search hides a readable file
        assert service_can_read(str(f), group) is False
        os.chmod(logs, 0o710)
        assert service_can_read(str(f), group) is True
        os.chmod(logs, 0o750)  # searchable by the group only: a stranger cannot reach the file
        assert service_can_read(str(f), stranger) is False
        assert service_can_read(str(logs / "gone.log"), group) is False
    finally:
        shutil.rmtree(base)

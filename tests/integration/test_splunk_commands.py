"""`llm-hec-sidecar splunk package | install | verify | report` against a fake splunkd on 127.0.0.1.

splunk-sdk talks real HTTP to sidecar/testing/fake_splunkd.py (auth/login, server/info,
search/v2/jobs oneshot, apps/local); the package is a real tarball that the fake fetches over
HTTP and opens, as splunkd does.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.splunk import report, spl
from sidecar.testing.fake_splunkd import FakeSplunkd, SearchFailed
from tests.conftest import REPO

APP = REPO / "dashboards" / "llm_usage"
PASSWORD = "s3cret-pw-for-test"
SCHEMA_FIELDS = set(
    json.loads((REPO / "sidecar/schema/llm_usage_1.json").read_text())["properties"]
)


@pytest.fixture
def splunkd(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSplunkd]:
    fake = FakeSplunkd(username="admin", password=PASSWORD, token="tok-123")
    url, stop = fake.run_in_thread()
    monkeypatch.setenv("SPLUNK_URL", url)
    monkeypatch.setenv("SPLUNK_USERNAME", "admin")
    monkeypatch.setenv("SPLUNK_PASSWORD", PASSWORD)
    monkeypatch.delenv("SPLUNK_TOKEN", raising=False)
    try:
        yield fake
    finally:
        stop()


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


# -- package --------------------------------------------------------------------------------


def test_package_is_clean_and_deterministic(tmp_path: Path, capsys) -> None:
    app = tmp_path / "src" / "llm_usage"
    shutil.copytree(APP, app)
    (app / ".DS_Store").write_bytes(b"junk")
    (app / "default" / ".props.conf.swp").write_bytes(b"junk")
    (app / "default" / "props.conf").chmod(0o755)  # an exec bit must not reach the package
    assert main(["splunk", "package", "--app-dir", str(app), "--out-dir", str(tmp_path / "a")]) == 0
    first = (tmp_path / "a" / "llm_usage-0.1.0.tar.gz").read_bytes()
    assert "sha256" in capsys.readouterr().out
    members = _members(tmp_path / "a" / "llm_usage-0.1.0.tar.gz")
    names = [m.name for m in members]
    assert names[0] == "llm_usage" and all(n.split("/")[0] == "llm_usage" for n in names)
    assert not any(n.startswith(("./", "/")) or "/." in n for n in names)
    assert not any("/local" in n for n in names)
    for m in members:
        assert m.mode == (0o755 if m.isdir() else 0o644), m.name
        assert m.isdir() or m.isfile(), m.name
        assert (m.uid, m.gid) == (0, 0)
    assert "llm_usage/default/props.conf" in names and "llm_usage/README" in names
    assert "llm_usage/lookups/llm_budgets.csv" in names
    # same app, different mtimes: same bytes
    for p in app.rglob("*"):
        p.touch()
    assert main(["splunk", "package", "--app-dir", str(app), "--out-dir", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "llm_usage-0.1.0.tar.gz").read_bytes() == first


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda app: (app / "local").mkdir(), "local"),
        (
            lambda app: _edit(app / "default/app.conf", "version = 0.1.0", "version = 0.1"),
            "not semver",
        ),
        (lambda app: _edit(app / "default/app.conf", "id = llm_usage", "id = other"), "folder"),
        (
            lambda app: _edit(
                app / "default/savedsearches.conf", "| `llm_dedup`", '| `llm_dedup` | eval x="'
            ),
            "unbalanced double quote",
        ),
    ],
)
def test_package_refuses_a_broken_app(tmp_path: Path, capsys, change, message: str) -> None:
    app = tmp_path / "llm_usage"
    shutil.copytree(APP, app)
    change(app)
    assert main(["splunk", "package", "--app-dir", str(app), "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tar.gz"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# -- install ------------------------------------------------------------------------------


def test_install_uploads_and_installs_through_rest(splunkd: FakeSplunkd, tmp_path, capsys) -> None:
    assert main(["splunk", "install", "--out-dir", str(tmp_path)]) == 0
    assert splunkd.apps["llm_usage"]["version"] == "0.1.0"
    assert splunkd.apps["llm_usage"]["size"] == (tmp_path / "llm_usage-0.1.0.tar.gz").stat().st_size
    paths = [(m, p) for m, p, _ in splunkd.requests]
    assert paths[0] == ("POST", "/services/auth/login")
    assert ("POST", "/services/apps/local") in paths
    form = next(f for m, p, f in splunkd.requests if p == "/services/apps/local")
    assert form["filename"] in {"1", "true", "True"} and form["update"] in {"1", "true", "True"}
    assert form["name"].startswith("http://127.0.0.1:")
    assert "installed llm_usage 0.1.0" in capsys.readouterr().out
    # again: an upgrade (update=true), not a conflict
    assert main(["splunk", "install", "--out-dir", str(tmp_path)]) == 0


def test_install_from_a_server_path(splunkd: FakeSplunkd, tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    args = ["splunk", "install", "--out-dir", str(tmp_path / "dist"), "--server-path", str(shared)]
    assert main(args) == 0
    form = next(f for m, p, f in splunkd.requests if p == "/services/apps/local")
    assert form["name"] == str(shared / "llm_usage-0.1.0.tar.gz")
    assert splunkd.apps["llm_usage"]["version"] == "0.1.0"


def test_wrong_password_fails_without_printing_it(splunkd, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("SPLUNK_PASSWORD", "wrong-password-xyz")
    assert main(["splunk", "install", "--out-dir", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "login" in out.err and "failed" in out.err
    assert "wrong-password-xyz" not in out.err + out.out
    assert not splunkd.apps


def test_token_auth_skips_login(splunkd: FakeSplunkd, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPLUNK_TOKEN", "tok-123")
    assert main(["splunk", "install", "--out-dir", str(tmp_path)]) == 0
    assert "/services/auth/login" not in [p for _, p, _ in splunkd.requests]


# -- verify -------------------------------------------------------------------------------

GOOD_ROW = {
    "events": "42", "last_event": "1772442002", "provider": "2", "model": "3", "status": "2",
    "is_streaming": "2", "tenant": "1", "user": "0", "heartbeats": "5",
}  # fmt: skip


def test_verify_passes_when_events_and_indexed_fields_arrive(splunkd: FakeSplunkd, capsys) -> None:
    splunkd.responder = lambda q, e, latest: [GOOD_ROW] if q.startswith("| tstats") else []
    assert main(["splunk", "verify", "--index", "llm_test"]) == 0
    out = capsys.readouterr().out
    assert "42 llm:usage events since -15m" in out and "note indexed field user: 0" in out
    s = splunkd.searches[-1]
    assert s["earliest_time"] == "-15m" and "index=llm_test" in s["search"]
    assert 'sourcetype="llm:usage"' in s["search"] and 'sourcetype="llm:sidecar"' in s["search"]


@pytest.mark.parametrize(
    ("row", "why"),
    [({**GOOD_ROW, "events": "0"}, "no llm:usage events"), ({**GOOD_ROW, "model": "0"}, "model")],
)
def test_verify_fails_without_events_or_indexed_fields(splunkd, capsys, row, why) -> None:
    splunkd.responder = lambda q, e, latest: [row]
    assert main(["splunk", "verify"]) == 1
    assert why in capsys.readouterr().out


def test_verify_reports_a_failed_search(splunkd: FakeSplunkd, capsys) -> None:
    def fail(q: str, e: str, latest: str) -> list[dict]:
        raise SearchFailed("Error in 'tstats' command: index llm does not exist")

    splunkd.responder = fail
    assert main(["splunk", "verify"]) == 1
    assert "index llm does not exist" in capsys.readouterr().err


# -- report -------------------------------------------------------------------------------

ROWS = {
    "totals": [{"requests": "3", "input_tokens": "300", "cached_input_tokens": "100",
                "cache_write_input_tokens": "0", "output_tokens": "30", "reasoning_tokens": "5",
                "cost_usd": "0.0123456789", "unpriced_requests": "1", "estimated_requests": "1"}],
    "BY provider model": [{"provider": "openai", "model": "gpt-4o", "requests": "2",
                           "input_tokens": "200", "output_tokens": "20", "cost_usd": "0.012"}],
    "BY api": [{"api": "chat.completions", "requests": "3", "input_tokens": "300",
                "output_tokens": "30", "cost_usd": "0.0123456789"}],
    "BY tenant ": [{"tenant": "acme", "requests": "3", "input_tokens": "300",
                    "output_tokens": "30", "cost_usd": "0.0123456789"}],
    "saved_usd": [{"model": "gpt-4o", "cached_input_tokens": "100", "cache_read_usd": "0.000125",
                   "cache_write_usd": "0", "saved_usd": "0.000125"}],
    "conversation_id": [{"conversation_id": "conv_1", "tenant": "acme", "requests": "2",
                         "cost_usd": "0.01"}],
    "BY tenant provider model api": [
        {"tenant": "globex", "provider": "anthropic", "model": "claude", "api": "messages",
         "requests": "1", "input_tokens": "10", "cached_input_tokens": "0",
         "cache_write_input_tokens": "5", "output_tokens": "2", "reasoning_tokens": "0",
         "cost_usd": "0.0000004999"},
        {"tenant": "(none)", "provider": "openai", "model": "gpt-4o", "api": "chat.completions",
         "requests": "2", "input_tokens": "200", "cached_input_tokens": "100",
         "cache_write_input_tokens": "0", "output_tokens": "20", "reasoning_tokens": "5",
         "cost_usd": "0.0123451"},
    ],
}  # fmt: skip


def _responder(q: str, e: str, latest: str) -> list[dict]:
    if "BY tenant provider model api" in q:
        return ROWS["BY tenant provider model api"]
    for key in ("BY provider model", "BY api", "BY tenant ", "saved_usd", "conversation_id"):
        if key in q:
            return ROWS[key]
    return ROWS["totals"]


def test_daily_markdown_report(splunkd: FakeSplunkd, capsys) -> None:
    splunkd.responder = _responder
    assert main(["splunk", "report", "daily", "--date", "2026-03-02"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# LLM cost report, daily 2026-03-02")
    assert "Spend: **$0.0123**" in out
    assert "3 (1 with estimated tokens, 1 unpriced)" in out
    for title in ("## By model", "## By API", "## By tenant", "## Cache savings",
                  "## Top conversations"):  # fmt: skip
        assert title in out
    assert "| openai | gpt-4o | 2 | 200 | 20 | 0.0120 |" in out
    assert "| conv_1 | acme | 2 | 0.0100 |" in out
    assert len(splunkd.searches) == 6
    for s in splunkd.searches:  # the UTC day, as epoch seconds
        assert (s["earliest_time"], s["latest_time"]) == ("1772409600", "1772496000")
        assert "| dedup event_id" in s["search"]


def test_monthly_csv_is_fit_for_chargeback(splunkd: FakeSplunkd, capsys) -> None:
    splunkd.responder = _responder
    assert main(["splunk", "report", "monthly", "--month", "2026-02", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["tenant"] for r in rows] == ["(none)", "globex"]  # sorted, nulls kept
    assert rows[0]["period_start"] == "2026-02-01T00:00:00+00:00"
    assert rows[0]["period_end"] == "2026-03-01T00:00:00+00:00"
    assert rows[0]["cost_usd"] == "0.012345" and rows[1]["cost_usd"] == "0.000000"
    assert rows[0]["cached_input_tokens"] == "100" and rows[1]["cache_write_input_tokens"] == "5"
    assert list(rows[0]) == report.CHARGEBACK_COLUMNS
    s = splunkd.searches[-1]
    assert (s["earliest_time"], s["latest_time"]) == ("1769904000", "1772323200")


def test_default_periods_are_the_last_complete_day_and_month() -> None:
    from datetime import date

    assert report.period("daily", None, date(2026, 3, 1)).label == "2026-02-28"
    assert report.period("monthly", None, date(2026, 1, 15)).label == "2025-12"
    assert report.period("monthly", None, date(2026, 3, 1)).end.day == 1


def test_report_and_verify_searches_pass_the_spl_check_and_the_schema() -> None:
    all_spl = {**report.searches("llm"), "chargeback": report.chargeback_search("llm")}
    for name, text in all_spl.items():
        a = spl.analyze(text)
        assert a.problems == [], name
        assert a.from_events - SCHEMA_FIELDS - spl.BUILTIN_FIELDS == set(), name
        assert a.money_ok, name
    v = spl.analyze(report.verify_search("llm"))
    assert v.problems == []


def test_install_reports_splunkd_refusing_the_package(splunkd: FakeSplunkd, tmp_path, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "llm_usage-0.1.0.tar.gz").mkdir()  # the copy into the shared folder fails
    args = ["splunk", "install", "--out-dir", str(tmp_path / "d"), "--server-path", str(shared)]
    assert main(args) == 1
    assert "Is a directory" in capsys.readouterr().err
    assert not splunkd.apps
    # a package splunkd cannot open: splunkd's REST error is shown
    from sidecar.splunk.client import SplunkError, Target, connect, install_app

    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball")
    service = connect(Target(splunkd.url, "admin", PASSWORD))
    with pytest.raises(SplunkError, match=r"HTTP 400.*failed to extract app"):
        install_app(service, str(bad), "llm_usage")


def test_fake_splunkd_requires_authentication(splunkd: FakeSplunkd) -> None:
    import urllib.error
    import urllib.request

    for path in ("/services/server/info", "/services/apps/local/llm_usage"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(splunkd.url + path, timeout=5)
        assert err.value.code == 401
        err.value.close()

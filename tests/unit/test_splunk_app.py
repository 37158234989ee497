"""The Splunk app dashboards/llm_usage: files, dashboards, alerts, lookups and every search in it.

AppInspect does not notice a nav entry pointing at nothing or a missing lookup CSV, nor a search
reading a field the sidecar never sends: these tests do.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sidecar.sinks.hec.encoder import INDEXED_FIELDS
from sidecar.splunk import appfiles, package, spl
from tests.conftest import REPO

APP = REPO / "dashboards" / "llm_usage"
VIEWS = APP / "default" / "data" / "ui" / "views"
SCHEMA = json.loads((REPO / "sidecar" / "schema" / "llm_usage_1.json").read_text())
EVENT_FIELDS = set(SCHEMA["properties"]) | {"flags{}"}  # KV_MODE=json names arrays `x{}`
HEARTBEAT = set(appfiles.HEARTBEAT_FIELDS) | {"health_reasons{}"}
SEARCHES = appfiles.app_searches(APP)
# Views Splunk itself provides in every app (nav may point at them).
SPLUNK_VIEWS = {"search", "dashboards", "reports", "alerts", "datasets"}


def _xml_files() -> list[Path]:
    return sorted(APP.rglob("*.xml"))


def test_layout_has_no_local_or_dotfiles_and_app_conf_is_valid() -> None:
    assert not (APP / "local").exists()
    assert not list(APP.rglob("local.meta"))
    assert not [p for p in APP.rglob(".*")]
    app_id, version, build = package.app_identity(APP)
    assert (app_id, build) == ("llm_usage", "1")
    assert package.SEMVER.match(version)
    conf = appfiles.read_conf(APP / "default" / "app.conf")
    assert 5 <= len(conf.get("ui", "label")) <= 80
    assert conf.get("install", "is_configured") == "false"
    for name in ("README", "metadata/default.meta", "default/data/ui/nav/default.xml"):
        assert (APP / name).is_file(), name


def test_no_token_anywhere_in_the_app() -> None:
    guid = re.compile(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    )
    for path in APP.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not guid.search(text), f"{path}: looks like a HEC token"
            assert "Authorization" not in text and "password" not in text.lower(), path


@pytest.mark.parametrize("path", _xml_files(), ids=lambda p: p.name)
def test_every_xml_file_parses(path: Path) -> None:
    ET.parse(path)


def test_the_seven_dashboards_are_simple_xml_1_1_with_time_picker_and_filters() -> None:
    names = {p.stem for p in VIEWS.glob("*.xml")}
    assert names == {
        "overview",
        "who_spends",
        "projections",
        "caching",
        "rate_limits",
        "data_quality",
        "conversations",
    }
    for path in VIEWS.glob("*.xml"):
        root = ET.parse(path).getroot()
        assert root.tag in {"form", "dashboard"} and root.get("version") == "1.1", path.name
        assert root.find("label") is not None
        tokens = {i.get("token"): i.get("type") for i in root.iter("input")}
        assert tokens == {
            "time": "time",
            "f_provider": "dropdown",
            "f_model": "dropdown",
            "f_tenant": "dropdown",
            "f_user": "dropdown",
            "f_streaming": "dropdown",
        }, path.name
        assert not root.get("script") and not list(root.iter("html")), "no custom JavaScript"
        for panel in root.iter("panel"):
            for search in panel.iter("search"):
                assert search.findtext("earliest") and search.findtext("latest"), path.name


def test_dashboard_filters_apply_to_every_llm_usage_panel() -> None:
    for path in VIEWS.glob("*.xml"):
        root = ET.parse(path).getroot()
        for panel in root.iter("panel"):
            query = panel.findtext(".//query") or ""
            if "`llm_usage`" in query:
                for tok in ("f_provider", "f_model", "f_tenant", "f_user", "f_streaming"):
                    assert f"${tok}$" in query, (path.name, panel.findtext("title"), tok)


def test_nav_entries_point_at_existing_views() -> None:
    nav = ET.parse(APP / "default" / "data" / "ui" / "nav" / "default.xml").getroot()
    views = {p.stem for p in VIEWS.glob("*.xml")}
    names = [v.get("name") for v in nav.iter("view")]
    assert names, "nav lists no view"
    for name in names:
        assert name in views or name in SPLUNK_VIEWS, f"nav entry {name!r} has no view"
    assert views <= set(names), "every dashboard is in the nav"
    assert [v.get("name") for v in nav.iter("view") if v.get("default") == "true"] == ["overview"]


def test_budget_lookup_csv_exists_with_header_and_definition_names_it() -> None:
    transforms = appfiles.read_conf(APP / "default" / "transforms.conf")
    assert transforms.get("llm_budgets", "filename") == "llm_budgets.csv"
    path = APP / "lookups" / "llm_budgets.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["tenant", "monthly_budget_usd", "owner"]
    for row in rows[1:]:
        assert len(row) == 3 and float(row[1]) >= 0
    # every lookup a search names is defined
    for s in SEARCHES:
        for name in re.findall(r"\b(?:input)?lookup\s+(\w+)", s.spl):
            assert name in appfiles.lookups(APP), (s.origin, name)


def test_every_saved_search_is_scheduled_with_a_window_suppression_and_severity() -> None:
    saved = appfiles.read_conf(APP / "default" / "savedsearches.conf")
    assert len(saved.sections()) >= 12
    macros = appfiles.macros(APP)
    for name in saved.sections():
        s = dict(saved.items(name))
        assert s["enableSched"] == "1" and len(s["cron_schedule"].split()) == 5, name
        assert s["dispatch.earliest_time"] and s["dispatch.latest_time"], name
        assert s["alert.suppress"] == "1" and s["alert.suppress.period"], name
        assert s["alert.severity"] in {"1", "2", "3", "4", "5", "6"}, name
        if s.get("alert.digest_mode") == "0":
            assert s.get("alert.suppress.fields"), f"{name}: per-result alerts suppress by field"
        assert s["description"], name
        if s.get("disabled") == "1":  # shipped disabled: the description names the macro to set
            named = re.findall(r"`(\w+)`", s["description"])
            assert any(m in macros for m in named) or "llm_budgets" in s["description"], name


def test_every_threshold_in_a_saved_search_is_a_documented_macro() -> None:
    macros_conf = appfiles.read_conf(APP / "default" / "macros.conf")
    saved = appfiles.read_conf(APP / "default" / "savedsearches.conf")
    assert macros_conf.get("llm_index", "definition").startswith("index=")
    for stanza in macros_conf.sections():
        assert len(macros_conf.get(stanza, "description")) > 20, stanza
    for name in saved.sections():
        search = saved.get(name, "search")
        # a comparison against a bare number is a hidden threshold
        for m in re.finditer(r"(?:>=?|<=?)\s*(\d+(?:\.\d+)?)\b", search):
            assert m.group(1) == "0", f"{name}: threshold {m.group(0)!r} should be a macro"


def test_fields_conf_declares_exactly_the_indexed_fields_the_sidecar_sends() -> None:
    fields = appfiles.read_conf(APP / "default" / "fields.conf")
    assert set(fields.sections()) == set(INDEXED_FIELDS)
    assert all(fields.get(f, "INDEXED") == "true" for f in fields.sections())


def test_props_extract_json_once_at_search_time_with_event_time() -> None:
    props = appfiles.read_conf(APP / "default" / "props.conf")
    for st in ("llm:usage", "llm:sidecar"):
        assert props.get(st, "KV_MODE") == "json"
        assert not props.has_option(st, "INDEXED_EXTRACTIONS"), "would extract every field twice"
        assert props.get(st, "TIME_PREFIX") == '"time":\\s*'
        assert props.get(st, "TIME_FORMAT") == "%s.%3N"


def test_the_app_has_searches_of_every_kind() -> None:
    origins = [s.origin for s in SEARCHES]
    assert sum(o.startswith("views/") for o in origins) > 40
    assert sum(o.startswith("savedsearches") for o in origins) >= 12
    assert any(o.startswith("macros") for o in origins)


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: s.origin)
def test_every_search_passes_the_offline_spl_check(search: appfiles.AppSearch) -> None:
    assert spl.analyze(search.spl, appfiles.lookups(APP)).problems == []


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: s.origin)
def test_every_field_a_search_reads_is_in_the_schema_or_created_by_the_search(
    search: appfiles.AppSearch,
) -> None:
    a = spl.analyze(search.spl, appfiles.lookups(APP))
    source = HEARTBEAT if 'sourcetype="llm:sidecar"' in search.spl else EVENT_FIELDS
    unknown = a.from_events - source - spl.BUILTIN_FIELDS
    assert not unknown, f"{search.origin} reads {sorted(unknown)}: not in the event schema"


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: s.origin)
def test_every_money_search_over_raw_events_removes_duplicates(
    search: appfiles.AppSearch,
) -> None:
    a = spl.analyze(search.spl, appfiles.lookups(APP))
    assert a.money_ok, f"{search.origin} sums money before `dedup event_id`"
    if a.money:
        assert "tstats" not in a.commands[:1], "money is never summed from tstats"


def test_tstats_searches_use_only_indexed_fields() -> None:
    indexed = set(INDEXED_FIELDS) | {"index", "sourcetype", "_time", "host", "source"}
    seen = 0
    for s in SEARCHES:
        if s.spl.lstrip().startswith("| tstats"):
            seen += 1
            first = spl.split_pipeline(s.spl)[1]
            a = spl.analyze("|" + first)
            assert a.used - {"count"} <= indexed, (s.origin, a.used - indexed)
    assert seen >= 6


def test_the_checks_catch_what_they_claim() -> None:
    bad = {
        'index=x | stats count BY "a': "unbalanced double quote",
        "index=x | eval a=(1": "unclosed (",
        "index=x | stats count) BY a": "unbalanced ')'",
        "index=x | frobnicate a": "unknown command",
        "index=x || stats count": "empty command",
        "index=x [search y | head 1": "unclosed [",
    }
    for text, problem in bad.items():
        assert any(problem in p for p in spl.analyze(text).problems), text
    with pytest.raises(spl.SplError, match="unknown macro"):
        spl.expand_macros("`nope` | head 1", {})
    a = spl.analyze("index=x | stats sum(estimated_cost_usd) AS c BY model")
    assert a.money and not a.money_ok
    a = spl.analyze("index=x | stats max(cost_output_usd) AS c BY event_id | stats sum(c)")
    assert a.money and a.money_ok
    a = spl.analyze("index=x | eval y=modle | table y")
    assert a.from_events - spl.BUILTIN_FIELDS == {"modle"}
    a = spl.analyze("index=x | eval y=1 | table y z")
    assert a.from_events - spl.BUILTIN_FIELDS == {"z"}


def test_searches_name_the_index_only_through_the_llm_index_macro() -> None:
    for s in SEARCHES:
        if s.origin != "macros [llm_index]":
            assert "index=" not in s.raw, f"{s.origin}: use `llm_index`"


def test_per_result_alerts_suppress_on_fields_their_search_outputs() -> None:
    saved = appfiles.read_conf(APP / "default" / "savedsearches.conf")
    macros = appfiles.macros(APP)
    for name in saved.sections():
        fields = saved.get(name, "alert.suppress.fields", fallback="")
        if not fields:
            continue
        a = spl.analyze(spl.expand_macros(saved.get(name, "search"), macros))
        for f in fields.split(","):
            assert f.strip() in a.used | a.created, f"{name}: suppresses on {f!r}, never output"

"""Read the Splunk app's files: conf stanzas, macros, lookups and every search in it.

Used by `splunk package` (refuses to build an app whose searches fail the offline SPL check) and
by the tests (schema contract, dedup of money searches, nav and lookup checks).
"""

from __future__ import annotations

import configparser
import csv
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from sidecar.splunk import spl

# Heartbeat body (cross-branch contract 3; sourcetype llm:sidecar, emitted by the sidecar).
HEARTBEAT_FIELDS = frozenset(  # a word list
    """schema kind time host version uptime_secs health health_reasons lag_secs spool_bytes
    spool_max_bytes events_sent_total events_failed_total events_dead_lettered_total
    records_set_aside_total requests_total tokens_estimated_total unpriced_requests_total
    events_per_sec""".split()  # noqa: SIM905
)
_TOKEN = re.compile(r"\$([A-Za-z0-9_.]+)\$")


@dataclass(frozen=True)
class AppSearch:
    origin: str  # e.g. "views/overview.xml panel 'Cost by model'" or "savedsearches [name]"
    raw: str  # as written (macros and $tokens$ left in)
    spl: str  # macros expanded, dashboard tokens replaced by their default values


def read_conf(path: Path) -> configparser.RawConfigParser:
    conf = configparser.RawConfigParser(strict=True, interpolation=None)
    conf.optionxform = str  # type: ignore[assignment,method-assign]
    conf.read(path, encoding="utf-8")
    return conf


def macros(app_dir: Path) -> dict[str, str]:
    conf = read_conf(app_dir / "default" / "macros.conf")
    return {s: conf.get(s, "definition") for s in conf.sections()}


def lookups(app_dir: Path) -> dict[str, list[str]]:
    """Lookup definition name -> CSV header (empty list when the CSV is missing)."""
    conf = read_conf(app_dir / "default" / "transforms.conf")
    out: dict[str, list[str]] = {}
    for stanza in conf.sections():
        if not conf.has_option(stanza, "filename"):
            continue
        path = app_dir / "lookups" / conf.get(stanza, "filename")
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                out[stanza] = next(csv.reader(f), [])
        else:
            out[stanza] = []
    return out


def _dashboard_searches(path: Path, expand: dict[str, str]) -> list[AppSearch]:
    root = ET.parse(path).getroot()
    defaults: dict[str, str] = {}
    for inp in root.iter("input"):
        default = inp.find("default")
        if inp.get("token") and default is not None and default.text is not None:
            defaults[inp.get("token", "")] = default.text
    out = []
    for search in root.iter("search"):
        query = search.find("query")
        if query is None or not (query.text or "").strip():
            continue
        raw = query.text.strip() if query.text else ""

        def token(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in defaults:
                raise spl.SplError(f"{path.name}: token ${name}$ has no input with a default")
            return defaults[name]

        origin = f"views/{path.name} {_owner(root, search)}"
        out.append(AppSearch(origin, raw, spl.expand_macros(_TOKEN.sub(token, raw), expand)))
    return out


def _owner(root: ET.Element, search: ET.Element) -> str:
    for tag in ("panel", "input"):
        for el in root.iter(tag):
            if any(s is search for s in el.iter("search")):
                name = el.findtext("title") if tag == "panel" else el.get("token")
                return f"{tag} {name!r}"
    return "search"


def app_searches(app_dir: Path) -> list[AppSearch]:
    """Every search of the app: dashboards (panels and inputs), saved searches, macros."""
    defs = macros(app_dir)
    out: list[AppSearch] = []
    for view in sorted((app_dir / "default" / "data" / "ui" / "views").glob("*.xml")):
        out.extend(_dashboard_searches(view, defs))
    saved = read_conf(app_dir / "default" / "savedsearches.conf")
    for stanza in saved.sections():
        raw = saved.get(stanza, "search")
        out.append(AppSearch(f"savedsearches [{stanza}]", raw, spl.expand_macros(raw, defs)))
    for name, definition in defs.items():
        expanded = spl.expand_macros(definition, defs)
        if re.fullmatch(r"\d+(\.\d+)?", expanded.strip()):
            continue  # a threshold
        if expanded.split()[0].lower() in spl.KNOWN_COMMANDS - {"search"}:
            expanded = "search * | " + expanded  # a pipeline tail such as `llm_dedup`
        out.append(AppSearch(f"macros [{name}]", definition, expanded))
    return out


def check_app(app_dir: Path) -> list[str]:
    """Offline SPL problems of every search in the app (empty when all pass)."""
    try:
        searches = app_searches(app_dir)
    except (spl.SplError, ET.ParseError, configparser.Error) as exc:
        return [str(exc)]
    looks = lookups(app_dir)
    problems = []
    for s in searches:
        problems += [f"{s.origin}: {p}" for p in spl.analyze(s.spl, looks).problems]
    return problems

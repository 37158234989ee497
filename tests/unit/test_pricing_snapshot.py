"""The compact price snapshot stands for the installed genai-prices catalogue, exactly.

The engine prices from `sidecar/enrich/pricing_snapshot.json` (no genai-prices import at start-up)
only when its digest matches the installed genai-prices; these tests prove the snapshot is
current, that it resolves names and compiles every model's schedule exactly as genai-prices' own
objects do, that a stale or broken snapshot falls back to genai-prices, and that a fresh process
prices an event without importing genai-prices at all.
"""

from __future__ import annotations

import logging
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.config import Pricing
from sidecar.enrich import pricing as pricing_mod
from sidecar.enrich import pricing_catalogue as pc
from sidecar.enrich.pricing import PricingEngine
from sidecar.enrich.pricing_models import Entry, find_model
from sidecar.types import Usage

TIERS = [None, "batch", "flex", "priority", "fast", "default", "standard"]
REGENERATE = "regenerate it with `python -m sidecar.enrich.pricing` and commit the file"


@pytest.fixture(scope="module")
def full() -> Any:
    return pricing_mod.full_catalogue()


@pytest.fixture(scope="module")
def compact() -> Any:
    cat = pricing_mod._compact_catalogue()
    assert cat is not None, f"the snapshot is not for the installed genai-prices: {REGENERATE}"
    return cat


def test_snapshot_is_current(full: Any) -> None:
    on_disk = orjson.loads(pricing_mod.SNAPSHOT_PATH.read_bytes())
    fresh = pc.snapshot_from_providers(full.providers, full.version, pricing_mod.source_digest())
    assert on_disk["source_digest"] == fresh["source_digest"], REGENERATE
    assert on_disk == fresh, REGENERATE
    assert on_disk["version"] == full.version


def _leaf_strings(clause: list[Any]) -> list[tuple[str, str]]:
    tag, arg = clause
    if tag in ("or", "and"):
        return [leaf for c in arg for leaf in _leaf_strings(c)]
    return [(tag, arg)]


def _spellings(model: Any) -> list[str]:
    """Names a model may be served as: its id, its match strings, and dated/prefixed forms."""
    names = [model.id, model.id.upper(), f"{model.id}-20250304", f"{model.id}-2025-03-04"]
    names += [f"openai/{model.id}", f"us.anthropic.{model.id}-v1:0", f"{model.id}@20250101"]
    for tag, s in _leaf_strings(model.match.raw):
        if tag in ("eq", "sw"):
            names += [s, f"{s}-preview-20241305"]
        elif tag in ("c", "ew"):
            names.append(f"x-{s}")
    return names


@pytest.mark.slow
def test_names_resolve_exactly_as_genai_prices_objects(full: Any, compact: Any) -> None:
    rng = random.Random(14)
    names = sorted({n.lower() for p in compact.providers for m in p.models for n in _spellings(m)})
    names += ["", "unknown-model", "gpt", "claude", "models/gemini-2.5-pro", "GPT-4O"]
    sample = rng.sample(names, 300) + names[-6:]
    hints = [None, "openai", "azure", "anthropic", "gemini", "vertex", "bedrock", "openrouter"]
    checked = found = 0
    for name in sample:
        for hint in [rng.choice(hints)]:
            ours = find_model(compact, hint, name)
            theirs = find_model(full, hint, name)
            key = (hint, name)
            assert (ours is None) == (theirs is None), key
            if ours is not None:
                assert (ours[0].id, ours[1].id) == (theirs[0].id, theirs[1].id), key
                found += 1
            checked += 1
    assert checked > 300 and found > 150


def test_each_provider_finds_models_as_genai_prices_does(full: Any, compact: Any) -> None:
    """Provider.find_model: own models, fallback providers, compact dates (`-20241022`)."""
    rng = random.Random(7)
    leaves = {s for p in compact.providers for m in p.models for _, s in _leaf_strings(m.match.raw)}
    dated = sorted(leaves, key=len)
    dated = [s for s in dated if re.search(r"-20\d\d-\d\d-\d\d", s)]
    compact_dated = [re.sub(r"-(20\d\d)-(\d\d)-(\d\d)", r"-\1\2\3", s) for s in dated]
    names = rng.sample(compact_dated, min(150, len(compact_dated)))
    names += [*rng.sample(sorted(leaves), 100), "gpt-4o-20241399", "unknown"]
    differ = hits = 0
    for p_ours, p_theirs in zip(compact.providers, full.providers, strict=True):
        for name in names:
            ours = p_ours.find_model(name, all_providers=compact.providers)
            theirs = p_theirs.find_model(name, all_providers=full.providers)
            assert getattr(ours, "id", None) == getattr(theirs, "id", None), (p_ours.id, name)
            hits += theirs is not None
            differ += theirs is not None and p_theirs._match_model(name.lower()) is None
    assert hits > 200 and differ > 20, (hits, differ)


def test_provider_names_resolve_as_genai_prices_does(full: Any, compact: Any) -> None:
    names = [p.id for p in full.providers] + [p.id.upper() + " " for p in full.providers]
    names += ["amazon-bedrock", "google-vertex", "my-cloudflare-gateway", "x-anthropic", "nope"]
    matched_by_rule = 0
    for name in names:
        ours, theirs = compact.provider(name), full.provider(name)
        assert getattr(ours, "id", None) == getattr(theirs, "id", None), name
        matched_by_rule += theirs is not None and theirs.id != name.strip().lower()
    assert matched_by_rule >= 4


def test_every_model_schedule_compiles_as_from_genai_prices(full: Any, compact: Any) -> None:
    """Every model, every service tier: the same schedule (days, off-peak cells, exact rates)."""
    compiled = 0
    for p_ours, p_theirs in zip(compact.providers, full.providers, strict=True):
        assert p_ours.id == p_theirs.id
        for m_ours, m_theirs in zip(p_ours.models, p_theirs.models, strict=True):
            assert m_ours.id == m_theirs.id
            e_ours = Entry(m_ours.id, p_ours, m_ours, [], "v")
            e_theirs = Entry(m_theirs.id, p_theirs, m_theirs, [], "v")
            for tier in TIERS:
                if tier not in (None, "standard") and not m_theirs.price_variants:
                    continue  # no variant: the standard schedule, already compared
                assert e_ours.schedule(tier) == e_theirs.schedule(tier), (p_ours.id, m_ours.id)
                compiled += 1
    assert compiled > 2300


def test_a_stale_or_broken_snapshot_falls_back_to_genai_prices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    snap = orjson.loads(pricing_mod.SNAPSHOT_PATH.read_bytes())
    snap["source_digest"] = "0" * 64
    stale = tmp_path / "stale.json"
    stale.write_bytes(orjson.dumps(snap))
    caplog.set_level(logging.INFO, logger="sidecar.pricing")
    monkeypatch.setattr(pricing_mod, "SNAPSHOT_PATH", stale)
    assert pricing_mod._compact_catalogue() is None
    assert "another genai-prices" in caplog.text
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"format": 1, "providers": [')
    monkeypatch.setattr(pricing_mod, "SNAPSHOT_PATH", broken)
    assert pricing_mod._compact_catalogue() is None
    monkeypatch.setattr(pricing_mod, "SNAPSHOT_PATH", tmp_path / "missing.json")
    assert pricing_mod._compact_catalogue() is None


def test_both_catalogues_price_the_same(full: Any, compact: Any) -> None:
    u = Usage(250_000, 10_000, 5_000, 1_000, 2_000, 500)
    at = 1_793_000_000.0  # 2026-10-27
    a = PricingEngine(Pricing(), source=full)
    b = PricingEngine(Pricing(), source=compact)
    for provider, model, tier in [
        ("openai", "gpt-4o", None),
        ("openai", "gpt-5", "flex"),
        ("anthropic", "claude-sonnet-4-5", "batch"),
        ("gemini", "gemini-2.5-pro", None),
        ("bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", None),
        ("vertex", "publishers/google/models/gemini-2.5-flash", "priority"),
    ]:
        ca = a.price(provider=provider, model=model, usage=u, at=at, service_tier=tier)
        cb = b.price(provider=provider, model=model, usage=u, at=at, service_tier=tier)
        assert ca.cost_known and ca == cb, (provider, model, tier)


def test_a_fresh_process_prices_without_importing_genai_prices() -> None:
    code = (
        "import sys\n"
        "from sidecar.config import Pricing\n"
        "from sidecar.enrich.pricing import PricingEngine\n"
        "from sidecar.types import Usage\n"
        "e = PricingEngine(Pricing())\n"
        "c = e.price(provider='openai', model='gpt-4o-mini', usage=Usage(1000, 0, 0, 0, 100, 0),"
        " at=1.7e9)\n"
        "print(c.total_nusd, e.catalogue.compact, 'genai_prices' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["210000", "True", "False"], out.stdout + out.stderr

"""The pricing engine: tiers, caches, reasoning, service tiers, resolution, overrides, statuses."""

from __future__ import annotations

import logging
import os
import signal
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import genai_prices
import pytest

from sidecar.config import PriceOverride, Pricing
from sidecar.enrich import pricing as pricing_mod
from sidecar.enrich.pricing import PricingEngine, reload_on_sighup
from sidecar.enrich.pricing_models import model_candidates
from sidecar.errors import ConfigError
from sidecar.types import (
    COST_ESTIMATED,
    COST_NO_USAGE,
    COST_PRICED,
    COST_UNPRICED_MODEL,
    BillingPart,
    Usage,
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


AT = ts("2026-11-01T12:00:00")  # after the catalogue's 2026-10 service-tier prices start


def nusd(usd_per_mtok: str, tokens: int) -> int:
    """Invoice arithmetic: tokens x USD/MTok in nano-USD, rounded half-even."""
    exact = Decimal(usd_per_mtok) * tokens / Decimal(1_000_000)
    return int(exact.quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN).scaleb(9))


@pytest.fixture(scope="module")
def engine() -> PricingEngine:
    return PricingEngine(Pricing())


def test_openai_input_includes_cache(engine: PricingEngine) -> None:
    # OpenAI usage: prompt_tokens=1600 of which cached_tokens=1000; completion 500 (reasoning 100)
    u = Usage(input_tokens=1600, cached_input_tokens=1000, output_tokens=500, reasoning_tokens=100)
    c = engine.price(provider="openai", model="gpt-4o-2024-08-06", usage=u, at=AT)
    assert c.cost_known and c.cost_status == COST_PRICED
    assert c.pricing_model == "gpt-4o"
    assert c.input_nusd == nusd("2.5", 600)
    assert c.cached_input_nusd == nusd("1.25", 1000)
    assert c.cache_write_nusd == 0
    assert c.output_nusd == nusd("10", 500)  # reasoning billed as output
    assert c.total_nusd == nusd("2.5", 600) + nusd("1.25", 1000) + nusd("10", 500)
    assert c.pricing_source == "genai-prices"
    assert c.pricing_version.startswith(f"genai-prices {genai_prices.__version__}")
    assert c.rates["input_usd_per_mtok"] == "2.5"


def test_anthropic_input_excludes_cache_once_normalised(engine: PricingEngine) -> None:
    """Anthropic reports input without cache; normalised, it prices like the invoice."""
    raw = {
        "model": "claude-sonnet-4-5",
        "usage": {
            "input_tokens": 100,  # excludes cache
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 500,
            "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 50,
        },
    }
    raw_u = raw["usage"]
    normalised = Usage(
        input_tokens=raw_u["input_tokens"]
        + raw_u["cache_read_input_tokens"]
        + raw_u["cache_creation_input_tokens"],
        cached_input_tokens=1000,
        cache_write_input_tokens=500,
        cache_write_1h_input_tokens=200,
        output_tokens=50,
    )
    c = engine.price(provider="anthropic", model="claude-sonnet-4-5", usage=normalised, at=AT)
    invoice = (
        nusd("3", 100) + nusd("0.3", 1000) + nusd("3.75", 300) + nusd("6", 200) + nusd("15", 50)
    )
    assert c.total_nusd == invoice
    assert c.input_nusd == nusd("3", 100)
    assert c.cached_input_nusd == nusd("0.3", 1000)
    assert c.cache_write_nusd == nusd("3.75", 300) + nusd("6", 200)
    # the 1-hour part on its own, at the rate the engine reports; 5m + 1h is the whole write
    assert c.rates["cache_write_1h_usd_per_mtok"] == "6"
    assert (
        c.cache_write_1h_nusd == nusd("6", 200) == nusd(c.rates["cache_write_1h_usd_per_mtok"], 200)
    )
    assert c.cache_write_nusd - c.cache_write_1h_nusd == nusd(
        c.rates["cache_write_usd_per_mtok"], 300
    )
    # genai-prices' own Anthropic extractor agrees on the raw body
    extracted = genai_prices.extract_usage(raw, provider_id="anthropic")
    ref = extracted.calc_price(genai_request_timestamp=datetime.fromtimestamp(AT, UTC))
    assert Decimal(c.total_nusd).scaleb(-9) == ref.total_price


def test_tier_above_prompt_threshold(engine: PricingEngine) -> None:
    below = Usage(input_tokens=200_000, output_tokens=1000)
    above = Usage(input_tokens=200_001, output_tokens=1000)
    cb = engine.price(provider="gemini", model="gemini-2.5-pro", usage=below, at=AT)
    ca = engine.price(provider="gemini", model="gemini-2.5-pro", usage=above, at=AT)
    assert cb.total_nusd == nusd("1.25", 200_000) + nusd("10", 1000)
    # cliff tier: every token pays the higher rate once the prompt exceeds 200k
    assert ca.total_nusd == nusd("2.5", 200_001) + nusd("15", 1000)
    assert ca.rates["tier_above_input_tokens"] == 200_000
    # cached tokens count towards the threshold (input includes cache)
    mixed = Usage(input_tokens=250_000, cached_input_tokens=100_000, output_tokens=10)
    cm = engine.price(provider="gemini", model="gemini-2.5-pro", usage=mixed, at=AT)
    assert cm.cached_input_nusd == nusd("0.25", 100_000)
    assert cm.input_nusd == nusd("2.5", 150_000)


def test_cache_write_five_minute_and_one_hour(engine: PricingEngine) -> None:
    u = Usage(
        input_tokens=10_000,
        cached_input_tokens=2_000,
        cache_write_input_tokens=5_000,
        cache_write_1h_input_tokens=1_000,
        output_tokens=0,
    )
    c = engine.price(provider="anthropic", model="claude-haiku-4-5", usage=u, at=AT)
    assert c.input_nusd == nusd("1", 3_000)
    assert c.cached_input_nusd == nusd("0.1", 2_000)
    assert c.cache_write_nusd == nusd("1.25", 4_000) + nusd("2", 1_000)
    assert c.cache_write_1h_nusd == nusd("2", 1_000)
    no_1h = engine.price(
        provider="openai", model="gpt-4o", usage=Usage(input_tokens=10, output_tokens=1), at=AT
    )
    assert no_1h.cache_write_1h_nusd == 0


def test_reasoning_priced_separately_when_the_catalogue_says_so(engine: PricingEngine) -> None:
    u = Usage(input_tokens=1000, output_tokens=3000, reasoning_tokens=2000)
    c = engine.price(provider="perplexity", model="sonar-deep-research", usage=u, at=AT)
    assert c.output_nusd == nusd("8", 1000) + nusd("3", 2000)
    assert c.rates["reasoning_usd_per_mtok"] == "3"


def test_request_fee_is_in_the_total(engine: PricingEngine) -> None:
    u = Usage(input_tokens=1000, output_tokens=1000)
    c = engine.price(provider="perplexity", model="sonar", usage=u, at=AT)
    fee = 12 * 1_000_000_000 // 1000  # $12 per 1000 requests
    assert c.total_nusd == nusd("1", 1000) + nusd("1", 1000) + fee


@pytest.mark.parametrize(
    ("tier", "inp", "out"),
    [
        (None, "1.25", "10"),
        ("batch", "0.625", "5"),
        ("flex", "0.625", "5"),
        ("priority", "2.5", "20"),
    ],
)
def test_service_tiers(engine: PricingEngine, tier: str | None, inp: str, out: str) -> None:
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    c = engine.price(provider="openai", model="gpt-5", usage=u, at=AT, service_tier=tier)
    assert c.total_nusd == nusd(inp, 1_000_000) + nusd(out, 1_000_000)


def test_unknown_service_tier_is_standard_and_variants_have_dates(engine: PricingEngine) -> None:
    u = Usage(input_tokens=1_000_000, output_tokens=0)
    std = engine.price(provider="openai", model="gpt-5", usage=u, at=AT, service_tier="scale")
    assert std.total_nusd == nusd("1.25", 1_000_000)
    before = engine.price(
        provider="openai", model="gpt-5", usage=u, at=ts("2026-01-01"), service_tier="flex"
    )
    assert before.total_nusd == nusd("1.25", 1_000_000)  # flex price starts 2026-10-12


def test_anthropic_batch(engine: PricingEngine) -> None:
    u = Usage(input_tokens=1_000_000, cached_input_tokens=500_000, output_tokens=1_000_000)
    c = engine.price(
        provider="anthropic", model="claude-haiku-4-5", usage=u, at=AT, service_tier="batch"
    )
    assert c.total_nusd == nusd("0.5", 500_000) + nusd("0.05", 500_000) + nusd("2.5", 1_000_000)
    std = engine.price(
        provider="anthropic", model="claude-haiku-4-5", usage=u, at=AT, service_tier="standard"
    )
    assert std.total_nusd == nusd("1", 500_000) + nusd("0.1", 500_000) + nusd("5", 1_000_000)


def test_dated_price_change(engine: PricingEngine) -> None:
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    old = engine.price(provider="openai", model="o3", usage=u, at=ts("2025-06-09T23:59:59"))
    new = engine.price(provider="openai", model="o3", usage=u, at=ts("2025-06-10T00:00:00"))
    assert old.total_nusd == nusd("10", 1_000_000) + nusd("40", 1_000_000)
    assert new.total_nusd == nusd("2", 1_000_000) + nusd("8", 1_000_000)


def test_off_peak_time_of_day(engine: PricingEngine) -> None:
    u = Usage(input_tokens=1_000_000, output_tokens=0)
    peak = engine.price(
        provider="deepseek", model="deepseek-chat", usage=u, at=ts("2026-03-01T12:00")
    )
    off = engine.price(
        provider="deepseek", model="deepseek-chat", usage=u, at=ts("2026-03-01T20:00")
    )
    assert peak.total_nusd == nusd("0.27", 1_000_000)
    assert off.total_nusd == nusd("0.135", 1_000_000)


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "openai/gpt-4o", "gpt-4o"),
        ("other", "openai/gpt-4o", "gpt-4o"),
        (None, "gpt-4o", "gpt-4o"),
        ("gemini", "models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("vertex", "publishers/google/models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("vertex", "claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4-0"),
        ("azure", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ],
)
def test_model_resolution(engine: PricingEngine, provider: str, model: str, expected: str) -> None:
    assert engine.resolve(provider, model) == expected


def test_bedrock_spelling_resolves_to_aws(engine: PricingEngine) -> None:
    name = engine.resolve("other", "us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert name is not None and "claude-3-5-sonnet" in name
    assert "claude-3-5-sonnet-20240620" in model_candidates(
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    )


def test_unknown_model_is_never_a_silent_zero(caplog: pytest.LogCaptureFixture) -> None:
    eng = PricingEngine(Pricing())
    u = Usage(input_tokens=10, output_tokens=10)
    with caplog.at_level(logging.WARNING, logger="sidecar.pricing"):
        for _ in range(3):
            c = eng.price(provider="other", model="my-homegrown-llm", usage=u, at=AT)
    assert not c.cost_known and c.cost_status == COST_UNPRICED_MODEL
    assert c.total_nusd == 0 and c.pricing_source is None
    assert eng.unpriced == {"my-homegrown-llm": 3}
    warnings = [r for r in caplog.records if "my-homegrown-llm" in r.getMessage()]
    assert len(warnings) == 1
    none = eng.price(provider="openai", model=None, usage=u, at=AT)
    assert none.cost_status == COST_UNPRICED_MODEL and eng.unpriced["(none)"] == 1


def test_no_usage_and_estimated(engine: PricingEngine) -> None:
    c = engine.price(provider="openai", model="gpt-4o", usage=None, at=AT)
    assert not c.cost_known and c.cost_status == COST_NO_USAGE
    e = engine.price(
        provider="openai",
        model="gpt-4o",
        usage=Usage(input_tokens=100, output_tokens=100),
        at=AT,
        tokens_estimated=True,
    )
    assert e.cost_known and e.cost_status == COST_ESTIMATED
    assert e.total_nusd == nusd("2.5", 100) + nusd("10", 100)


def test_at_none_means_now(engine: PricingEngine) -> None:
    c = engine.price(provider="openai", model="gpt-4o", usage=Usage(input_tokens=1))
    assert c.cost_known


def test_aliases_for_azure_deployments() -> None:
    eng = PricingEngine(Pricing(aliases={"My-GPT4o-Deployment": "gpt-4o"}))
    u = Usage(input_tokens=1000, output_tokens=1000)
    c = eng.price(provider="azure", model="my-gpt4o-deployment", usage=u, at=AT)
    assert c.cost_known and c.pricing_model == "gpt-4o"
    assert c.total_nusd == nusd("2.5", 1000) + nusd("10", 1000)


def test_billing_parts_each_under_its_own_model(engine: PricingEngine) -> None:
    parts = [
        BillingPart(model=None, usage=Usage(input_tokens=1000, output_tokens=100)),
        BillingPart(model="claude-haiku-4-5", usage=Usage(input_tokens=2000, output_tokens=200)),
    ]
    total = Usage()
    for p in parts:
        total.add(p.usage)
    c = engine.price(
        provider="anthropic", model="claude-opus-4-1", usage=total, billing_parts=parts, at=AT
    )
    assert c.total_nusd == (nusd("15", 1000) + nusd("75", 100) + nusd("1", 2000) + nusd("5", 200))
    assert c.pricing_model == "claude-opus-4-1,claude-haiku-4-5"
    assert c.cache_write_nusd == c.cache_write_1h_nusd == 0
    # cache writes in both parts: each part's 1-hour writes at its own model's 1-hour rate
    written = [
        BillingPart(
            model=None,
            usage=Usage(
                input_tokens=1000, cache_write_input_tokens=600, cache_write_1h_input_tokens=100
            ),
        ),
        BillingPart(
            model="claude-haiku-4-5",
            usage=Usage(
                input_tokens=2000, cache_write_input_tokens=900, cache_write_1h_input_tokens=300
            ),
        ),
    ]
    cw = engine.price(
        provider="anthropic", model="claude-opus-4-1", usage=None, billing_parts=written, at=AT
    )
    assert cw.cache_write_1h_nusd == nusd("30", 100) + nusd("2", 300)
    assert cw.cache_write_nusd - cw.cache_write_1h_nusd == nusd("18.75", 500) + nusd("1.25", 600)
    unknown = engine.price(
        provider="anthropic",
        model="claude-opus-4-1",
        usage=total,
        billing_parts=[*parts, BillingPart(model="nope-model", usage=Usage(input_tokens=1))],
        at=AT,
    )
    assert unknown.cost_status == COST_UNPRICED_MODEL


# -- overrides -------------------------------------------------------------------------------


def test_override_custom_model_with_explicit_prices_and_rounding() -> None:
    cfg = Pricing(
        overrides=[
            PriceOverride(
                model="my-llama-70b", input_usd_per_mtok="0.0001", output_usd_per_mtok="0.3"
            )
        ]
    )
    eng = PricingEngine(cfg)
    # 5 tokens x $0.0001/MTok = 0.5 nano-USD -> 0 (half to even); 15 tokens -> 1.5 -> 2
    c5 = eng.price(provider="other", model="my-llama-70b", usage=Usage(input_tokens=5), at=AT)
    c15 = eng.price(provider="other", model="my-llama-70b", usage=Usage(input_tokens=15), at=AT)
    assert (c5.input_nusd, c15.input_nusd) == (0, 2)
    c = eng.price(
        provider="other",
        model="My-Llama-70B",
        usage=Usage(input_tokens=1_000_000, cached_input_tokens=500_000, output_tokens=10),
        at=AT,
    )
    assert c.pricing_source == "override" and c.pricing_version == "override"
    assert c.pricing_model == "my-llama-70b"
    # cached defaults to the input price
    assert c.cached_input_nusd == nusd("0.0001", 500_000)
    assert c.output_nusd == nusd("0.3", 10)


def test_override_discount_with_effective_date() -> None:
    cfg = Pricing(
        overrides=[PriceOverride(model="gpt-4o", discount_pct="12.5", effective_from="2026-06-01")]
    )
    eng = PricingEngine(cfg)
    u = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=1_000_000)
    before = eng.price(provider="openai", model="gpt-4o-2024-08-06", usage=u, at=ts("2026-05-31"))
    after = eng.price(provider="openai", model="gpt-4o-2024-08-06", usage=u, at=ts("2026-06-01"))
    assert before.pricing_source == "genai-prices"
    assert before.total_nusd == nusd("2.5", 600_000) + nusd("1.25", 400_000) + nusd("10", 10**6)
    assert after.pricing_source == "override"
    assert after.pricing_version == "override:2026-06-01"
    assert after.total_nusd == (
        nusd("2.1875", 600_000) + nusd("1.09375", 400_000) + nusd("8.75", 1_000_000)
    )
    # the discount follows the catalogue's tiers/variants (batch after 2026-10-14)
    batch = eng.price(provider="openai", model="gpt-4o", usage=u, at=AT, service_tier="batch")
    assert batch.total_nusd == (
        nusd("1.09375", 600_000) + nusd("1.09375", 400_000) + nusd("4.375", 1_000_000)
    )


def test_override_free_and_provider_restricted() -> None:
    cfg = Pricing(
        overrides=[
            PriceOverride(model="gpt-4o", provider="azure", free=True),
            PriceOverride(model="local-qwen", free=True, effective_from="2026-01-01"),
        ]
    )
    eng = PricingEngine(cfg)
    u = Usage(input_tokens=1000, output_tokens=1000)
    az = eng.price(provider="azure", model="gpt-4o", usage=u, at=AT)
    oa = eng.price(provider="openai", model="gpt-4o", usage=u, at=AT)
    assert az.cost_known and az.total_nusd == 0 and az.pricing_source == "override"
    assert oa.total_nusd > 0 and oa.pricing_source == "genai-prices"
    free = eng.price(provider="other", model="local-qwen", usage=u, at=AT)
    assert free.cost_known and free.cost_status == COST_PRICED and free.total_nusd == 0
    early = eng.price(provider="other", model="local-qwen", usage=u, at=ts("2025-12-31"))
    assert early.cost_status == COST_UNPRICED_MODEL  # not in the catalogue before it applies


@pytest.mark.parametrize(
    ("override", "key"),
    [
        (
            PriceOverride(model="x", discount_pct="10", input_usd_per_mtok="1"),
            "pricing.overrides[0]",
        ),
        (PriceOverride(model="x", input_usd_per_mtok="1"), "output_usd_per_mtok"),
        (PriceOverride(model="x"), "pricing.overrides[0]"),
        (PriceOverride(model="", free=True), "model"),
        (PriceOverride(model="x", discount_pct="101"), "discount_pct"),
        (PriceOverride(model="x", free=True, effective_from="next week"), "effective_from"),
        (
            PriceOverride(model="x", input_usd_per_mtok="abc", output_usd_per_mtok="1"),
            "input_usd_per_mtok",
        ),
        (
            PriceOverride(model="x", input_usd_per_mtok="-1", output_usd_per_mtok="1"),
            "input_usd_per_mtok",
        ),
    ],
)
def test_bad_overrides_are_config_errors(override: PriceOverride, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        PricingEngine(Pricing(overrides=[override]))
    assert key in err.value.key


def test_reload_overrides_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "overrides.yaml"
    f.write_text("- model: my-model\n  input_usd_per_mtok: '1'\n  output_usd_per_mtok: '2'\n")
    eng = PricingEngine(Pricing(overrides_file="overrides.yaml"), base_dir=str(tmp_path))
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert eng.price(provider=None, model="my-model", usage=u, at=AT).total_nusd == 3 * 10**9

    f.write_text(
        "overrides:\n"
        "  - model: my-model\n    input_usd_per_mtok: '2'\n    output_usd_per_mtok: '2'\n"
    )
    assert eng.reload() is True
    assert eng.price(provider=None, model="my-model", usage=u, at=AT).total_nusd == 4 * 10**9

    for bad in (
        "- model: my-model\n  input_usd_per_mtok: '2'\n",  # no output price
        "- model: my-model\n  inptu_usd_per_mtok: '2'\n",  # unknown key
        "- [unclosed\n",  # not YAML
        "just a string\n",
    ):
        f.write_text(bad)
        with caplog.at_level(logging.WARNING, logger="sidecar.pricing"):
            assert eng.reload() is False
        assert "keeping the previous" in caplog.records[-1].getMessage()
        assert eng.price(provider=None, model="my-model", usage=u, at=AT).total_nusd == 4 * 10**9
    f.unlink()
    assert eng.reload() is False  # a missing file keeps the table too


def test_sighup_reloads(tmp_path: Path) -> None:
    f = tmp_path / "o.yaml"
    f.write_text("- model: my-model\n  free: true\n")
    eng = PricingEngine(Pricing(overrides_file=str(f)))
    u = Usage(input_tokens=1_000_000)
    assert eng.price(provider=None, model="my-model", usage=u, at=AT).total_nusd == 0
    f.write_text("- model: my-model\n  input_usd_per_mtok: '1'\n  output_usd_per_mtok: '1'\n")
    previous = signal.getsignal(signal.SIGHUP)
    try:
        reload_on_sighup(eng)
        os.kill(os.getpid(), signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert eng.price(provider=None, model="my-model", usage=u, at=AT).total_nusd == 10**9


def test_bad_overrides_file_at_startup_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "o.yaml").write_text("- model: m\n  discount_pct: lots\n")
    with pytest.raises(ConfigError):
        PricingEngine(Pricing(overrides_file="o.yaml"), base_dir=str(tmp_path))


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing_mod, "LRU_SIZE", 8)
    cfg = Pricing(overrides=[PriceOverride(model=f"m{i}", free=True) for i in range(20)])
    eng = PricingEngine(cfg)
    for i in range(20):
        c = eng.price(provider=None, model=f"m{i}", usage=Usage(input_tokens=1), at=AT)
        assert c.cost_known
    assert len(eng._plans) <= 8
    assert eng._lookup.cache_info().maxsize == 8

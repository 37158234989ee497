"""The pricing engine: the catalogue, config overrides, and the cost of one request.

Owns DESIGN.md section 5. This is the only module that imports genai_prices (its bundled
catalogue, never the network). `sidecar.enrich.pricing_models` resolves a served model name
(resolution order, normalised spellings, the LRU of resolutions) and compiles each resolved
model's per-tier schedules; `sidecar.enrich.pricing_table` turns prices into exact integer rate
tables. Neither holds third-party code.

Per request: aliases from config, then a bounded LRU of (provider, model) -> resolved entry (hits
and misses), then a per-service-tier schedule (bisect on the date, compiled once), then a handful
of integer multiplications. Money is integer nano-USD rounded half-even once per component and
once for the total (from the exact sum).

Overrides (config `pricing.overrides` and the YAML list in `pricing.overrides_file`) win over the
catalogue from their `effective_from` date (UTC) on; before it the catalogue applies. An override
is matched by (provider, model) or (any provider, model), where model is the served name after
aliases, the raw name, or the catalogue model id it resolved to. Kinds (exactly one per entry):
`free: true`; `discount_pct` off every catalogue rate; explicit `*_usd_per_mtok` prices (input
and output required; cached and cache-write default to the input price).

Service tiers select genai-prices price variants: `batch` (processing=batch), `flex`,
`priority`, `fast` (service_tier and Anthropic speed=fast), `default`; any other tier is the
standard price. As in genai-prices, variants apply only to a provider's own models (Azure serving
an OpenAI catalogue model pays the standard price).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import signal
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import genai_prices
from genai_prices import data as _gp_data
from genai_prices.data_snapshot import find_provider_by_id

from sidecar.config import Pricing
from sidecar.enrich import pricing_table as pt
from sidecar.enrich.pricing_models import (
    Entry,
    ModelResolver,
    catalogue_provider_id,
)
from sidecar.errors import ConfigError
from sidecar.types import (
    COST_ESTIMATED,
    COST_NO_USAGE,
    COST_PRICED,
    COST_UNPRICED_MODEL,
    BillingPart,
    Cost,
    Usage,
)

log = logging.getLogger("sidecar.pricing")

SOURCE_CATALOGUE = pt.SOURCE_CATALOGUE
SOURCE_OVERRIDE = pt.SOURCE_OVERRIDE
LRU_SIZE = 4096


def _catalogue_version() -> str:
    try:
        digest = hashlib.sha256(Path(_gp_data.__file__).read_bytes()).hexdigest()[:12]
    except OSError:  # pragma: no cover - the module was loaded from somewhere readable
        return f"genai-prices {genai_prices.__version__}"
    return f"genai-prices {genai_prices.__version__} (data {digest})"


class _Catalogue:
    """The bundled genai-prices providers, their search order and version (process-wide)."""

    def __init__(self) -> None:
        self.providers: list[Any] = list(_gp_data.providers)
        self.version = _catalogue_version()
        last = [p for p in self.providers if p.id == "openrouter"]
        self.search_order = [p for p in self.providers if p.id != "openrouter"] + last

    def provider(self, name: str | None) -> Any | None:
        provider_id = catalogue_provider_id(name)
        return None if provider_id is None else find_provider_by_id(self.providers, provider_id)


@functools.cache
def catalogue() -> _Catalogue:
    return _Catalogue()


# What the hot path needs per (provider, model, service tier): a schedule and the pricing model.
_Plan = tuple[list[float], list[Any], bool, str | None]
_UNPRICED_PLAN: _Plan = ([], [None], False, None)


class PricingEngine:
    """Prices requests from the genai-prices catalogue and config overrides (see module doc)."""

    def __init__(self, cfg: Pricing, *, base_dir: str = ".") -> None:
        self.cfg = cfg
        self.base_dir = Path(base_dir)
        self.catalogue = catalogue()
        self.unpriced: dict[str, int] = {}
        self._inline = [
            pt.compile_override(o, f"pricing.overrides[{i}]") for i, o in enumerate(cfg.overrides)
        ]
        self._overrides = self._index(self._inline + self._file_overrides())
        self._lookup = self._resolutions()
        self._plans: dict[tuple[str | None, str | None, str | None], _Plan] = {}

    # -- overrides ---------------------------------------------------------------------------

    def _overrides_path(self) -> Path | None:
        if not self.cfg.overrides_file:
            return None
        path = Path(self.cfg.overrides_file).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def _file_overrides(self) -> list[pt.Override]:
        path = self._overrides_path()
        if path is None:
            return []
        return [
            pt.compile_override(o, f"{path}[{i}]")
            for i, o in enumerate(pt.load_overrides_file(path))
        ]

    @staticmethod
    def _index(overrides: list[pt.Override]) -> dict[tuple[str | None, str], list[pt.Override]]:
        index: dict[tuple[str | None, str], list[pt.Override]] = {}
        for o in overrides:
            index.setdefault((o.provider, o.model), []).append(o)
        return index

    def reload(self) -> bool:
        """Re-read `overrides_file`; on any error keep the current table and log why."""
        try:
            index = self._index(self._inline + self._file_overrides())
        except ConfigError as exc:
            log.warning("pricing overrides not reloaded, keeping the previous ones: %s", exc)
            return False
        except Exception as exc:  # a broken file must never take pricing down
            log.warning("pricing overrides not reloaded, keeping the previous ones: %r", exc)
            return False
        self._overrides = index
        self._lookup = self._resolutions()
        self._plans = {}
        log.info("pricing overrides reloaded: %d entries", sum(map(len, index.values())))
        return True

    # -- resolution --------------------------------------------------------------------------

    def _resolutions(self) -> Callable[[str | None, str | None], Entry | None]:
        """A fresh LRU of (provider, model) -> entry over the aliases and current overrides."""
        return ModelResolver(self.catalogue, self.cfg.aliases, self._overrides, LRU_SIZE).lookup

    def resolve(self, provider: str | None, model: str | None) -> str | None:
        """The pricing model a (provider, model) resolves to, or None (cached)."""
        entry = self._lookup(provider, model)
        return None if entry is None else entry.pricing_model

    # -- costs -------------------------------------------------------------------------------

    def _unpriced(self, provider: str | None, model: str | None, pricing_model: str | None) -> Cost:
        key = model or "(none)"
        count = self.unpriced.get(key, 0)
        if count == 0:
            log.warning(
                "no price for model %r (provider %s): its events carry cost_known=false, "
                "cost_status=unpriced_model; add a pricing alias or override",
                key,
                provider,
            )
        self.unpriced[key] = count + 1
        return Cost(False, COST_UNPRICED_MODEL, pricing_model=pricing_model)

    def price(
        self,
        *,
        provider: str | None,
        model: str | None,
        usage: Usage | None,
        billing_parts: Sequence[BillingPart] = (),
        at: float | None = None,
        service_tier: str | None = None,
        tokens_estimated: bool = False,
    ) -> Cost:
        """The cost of one request (integer nano-USD); `at` is epoch seconds (None: now)."""
        if billing_parts:
            return self._price_parts(
                provider, model, billing_parts, at, service_tier, tokens_estimated
            )
        if usage is None:
            return Cost(False, COST_NO_USAGE, pricing_model=self.resolve(provider, model))
        plan = self._plans.get((provider, model, service_tier))
        if plan is None:
            plan = self._plan(provider, model, service_tier)
        bounds, segs, tod, pricing_model = plan
        if at is None:
            at = time.time()
        r = segs[bisect_right(bounds, at)] if bounds else segs[0]
        if tod:
            r = r[1][bisect_right(r[0], at % 86400)]
        if r is None:
            return self._unpriced(provider, model, pricing_model)
        inp = usage.input_tokens
        if r[8]:
            r = pt.select_tier(r, inp)
        r_in, r_cached, r_cw5m, r_cw1h, r_out, r_rs, fee, div, _, shown, source, version = r
        cached = usage.cached_input_tokens
        cw = usage.cache_write_input_tokens
        cw1h = usage.cache_write_1h_input_tokens
        out = usage.output_tokens
        rs = usage.reasoning_tokens
        uncached = inp - cached - cw
        if uncached < 0:
            uncached = 0
        if cw1h > cw:
            cw1h = cw
        if rs > out:
            rs = out
        a_in = uncached * r_in
        a_cached = cached * r_cached
        a_cw = (cw - cw1h) * r_cw5m + cw1h * r_cw1h
        a_out = (out - rs) * r_out + rs * r_rs
        total = a_in + a_cached + a_cw + a_out + fee
        if div != 1:
            rnd = pt.round_half_even
            a_in = rnd(a_in, div)
            a_cached = rnd(a_cached, div)
            a_cw = rnd(a_cw, div)
            a_out = rnd(a_out, div)
            total = rnd(total, div)
        return Cost(
            True,
            COST_ESTIMATED if tokens_estimated else COST_PRICED,
            a_in,
            a_cached,
            a_cw,
            a_out,
            total,
            pricing_model,
            source,
            version,
            shown,
        )

    def _plan(self, provider: str | None, model: str | None, service_tier: str | None) -> _Plan:
        """Resolve and compile what `price` needs for one (provider, model, tier); cache it."""
        entry = self._lookup(provider, model)
        if entry is None:
            plan: _Plan = _UNPRICED_PLAN
        else:
            bounds, segs, tod = entry.schedules.get(service_tier) or entry.schedule(service_tier)
            plan = (bounds, segs, tod, entry.pricing_model)
        plans = self._plans
        if len(plans) >= LRU_SIZE:
            del plans[next(iter(plans))]  # the oldest compiled plan
        plans[(provider, model, service_tier)] = plan
        return plan

    def _price_parts(
        self,
        provider: str | None,
        model: str | None,
        parts: Sequence[BillingPart],
        at: float | None,
        service_tier: str | None,
        tokens_estimated: bool,
    ) -> Cost:
        """Each part under its own model, summed exactly, rounded once per component."""
        if at is None:
            at = time.time()
        priced: list[tuple[tuple[int, ...], pt.Rates, str]] = []
        for part in parts:
            part_model = part.model or model
            entry = self._lookup(provider, part_model)
            rates = None
            if entry is not None:
                sched = entry.schedules.get(service_tier) or entry.schedule(service_tier)
                rates = pt.rates_at_time(sched, at)
            if entry is None or rates is None:
                return self._unpriced(provider, part_model, entry.pricing_model if entry else None)
            u = part.usage
            amounts = pt.exact_amounts(
                rates,
                u.input_tokens,
                u.cached_input_tokens,
                u.cache_write_input_tokens,
                u.cache_write_1h_input_tokens,
                u.output_tokens,
                u.reasoning_tokens,
            )
            priced.append((amounts, pt.select_tier(rates, u.input_tokens), entry.pricing_model))
        div = max(a[-1] for a, _, _ in priced)
        sums = [0, 0, 0, 0, 0]
        for amounts, _, _ in priced:
            scale = div // amounts[-1]
            for i in range(5):
                sums[i] += amounts[i] * scale
        total = sum(sums)
        comps = [pt.round_half_even(v, div) for v in sums[:4]]
        first = priced[0][1]
        models = list(dict.fromkeys(m for _, _, m in priced))
        sources = list(dict.fromkeys(r[pt.R_SOURCE] for _, r, _ in priced))
        versions = list(dict.fromkeys(r[pt.R_VERSION] for _, r, _ in priced))
        return Cost(
            True,
            COST_ESTIMATED if tokens_estimated else COST_PRICED,
            *comps,
            pt.round_half_even(total, div),
            ",".join(models),
            SOURCE_OVERRIDE if SOURCE_OVERRIDE in sources else SOURCE_CATALOGUE,
            "; ".join(versions),
            first[pt.R_DISPLAY],
        )


def reload_on_sighup(engine: PricingEngine, loop: Any | None = None) -> None:
    """Make SIGHUP call `engine.reload()` (on the asyncio `loop` if given, else a plain handler).

    A plain handler must be installed from the main thread; an asyncio loop runs the reload in the
    loop thread between callbacks.
    """
    if loop is not None:
        loop.add_signal_handler(signal.SIGHUP, engine.reload)
    else:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: engine.reload())

"""The pricing engine: the catalogue, config overrides, and the cost of one request.

Owns DESIGN.md section 5. This is the only module that imports genai_prices (its bundled
catalogue, never the network), and only when it must: the catalogue is normally read from the
compact snapshot `pricing_snapshot.json` (`sidecar.enrich.pricing_catalogue`), which is used only
while its digest matches the installed genai-prices sources; otherwise genai-prices is imported
(slower start-up, same prices). After upgrading genai-prices, regenerate the snapshot with
`python -m sidecar.enrich.pricing`. `sidecar.enrich.pricing_models` resolves a served model name
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
import importlib.util
import logging
import signal
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from sidecar.config import Pricing
from sidecar.enrich import pricing_catalogue as pc
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
SNAPSHOT_PATH = Path(__file__).with_name("pricing_snapshot.json")
# The genai-prices files whose content the snapshot stands for (prices, rules, version).
_DIGESTED = ("data.py", "types.py", "data_snapshot.py", "__init__.py")


def _genai_prices_dir() -> Path | None:
    """Where genai_prices is installed, found without importing it."""
    spec = importlib.util.find_spec("genai_prices")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def source_digest() -> str | None:
    """A digest of the installed genai-prices data and rules (None: not readable)."""
    folder = _genai_prices_dir()
    if folder is None:
        return None
    h = hashlib.sha256()
    try:
        for name in _DIGESTED:
            with open(folder / name, "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
    except OSError:
        return None
    return h.hexdigest()


def _catalogue_version() -> str:
    import genai_prices
    from genai_prices import data as _gp_data

    try:
        digest = hashlib.sha256(Path(_gp_data.__file__).read_bytes()).hexdigest()[:12]
    except OSError:  # pragma: no cover - the module was loaded from somewhere readable
        return f"genai-prices {genai_prices.__version__}"
    return f"genai-prices {genai_prices.__version__} (data {digest})"


class _Catalogue:
    """Catalogue providers, their search order and version (duck-typed for pricing_models).

    `compact` is the snapshot's providers (pricing_catalogue), else genai-prices' own objects.
    """

    def __init__(self, providers: list[Any], version: str, compact: bool) -> None:
        self.providers = providers
        self.version = version
        self.compact = compact
        last = [p for p in self.providers if p.id == "openrouter"]
        self.search_order = [p for p in self.providers if p.id != "openrouter"] + last
        if compact:
            self._find_provider: Callable[[list[Any], str], Any] = pc.find_provider_by_id
        else:
            from genai_prices.data_snapshot import find_provider_by_id

            self._find_provider = find_provider_by_id

    def provider(self, name: str | None) -> Any | None:
        provider_id = catalogue_provider_id(name)
        return None if provider_id is None else self._find_provider(self.providers, provider_id)


def full_catalogue() -> _Catalogue:
    """The catalogue from genai-prices' own objects (imports genai-prices; slow start-up)."""
    from genai_prices import data as _gp_data

    return _Catalogue(list(_gp_data.providers), _catalogue_version(), compact=False)


def _compact_catalogue() -> _Catalogue | None:
    """The catalogue from the snapshot, if it was written from the installed genai-prices."""
    try:
        snapshot = orjson.loads(SNAPSHOT_PATH.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        log.info("pricing snapshot not usable (%s); loading genai-prices", exc)
        return None
    digest = source_digest()
    if digest is None or snapshot.get("source_digest") != digest:
        log.info(
            "pricing snapshot was written from another genai-prices (%s); loading genai-prices "
            "(slower start-up; regenerate with `python -m sidecar.enrich.pricing`)",
            snapshot.get("version"),
        )
        return None
    return _Catalogue(pc.providers_from_snapshot(snapshot), snapshot["version"], compact=True)


@functools.cache
def catalogue() -> _Catalogue:
    """The process-wide catalogue: the compact snapshot when current, else genai-prices."""
    return _compact_catalogue() or full_catalogue()


def write_snapshot(path: Path = SNAPSHOT_PATH) -> Path:
    """Write the compact snapshot of the installed genai-prices catalogue to `path`."""
    full = full_catalogue()
    digest = source_digest()
    if digest is None:
        raise RuntimeError("cannot read the installed genai-prices sources")
    snap = pc.snapshot_from_providers(full.providers, full.version, digest)
    path.write_bytes(pc.dump_snapshot(snap))
    return path


# What the hot path needs per (provider, model, service tier): a schedule and the pricing model.
_Plan = tuple[list[float], list[Any], bool, str | None]
_UNPRICED_PLAN: _Plan = ([], [None], False, None)


class PricingEngine:
    """Prices requests from the genai-prices catalogue and config overrides (see module doc)."""

    def __init__(
        self, cfg: Pricing, *, base_dir: str = ".", source: _Catalogue | None = None
    ) -> None:
        self.cfg = cfg
        self.base_dir = Path(base_dir)
        self.catalogue = source or catalogue()
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
        a_cw1h = cw1h * r_cw1h
        a_cw = (cw - cw1h) * r_cw5m + a_cw1h
        a_out = (out - rs) * r_out + rs * r_rs
        total = a_in + a_cached + a_cw + a_out + fee
        if div != 1:
            rnd = pt.round_half_even
            a_in = rnd(a_in, div)
            a_cached = rnd(a_cached, div)
            a_cw = rnd(a_cw, div)
            a_cw1h = rnd(a_cw1h, div)
            a_out = rnd(a_out, div)
            total = rnd(total, div)
        return Cost(
            True,
            COST_ESTIMATED if tokens_estimated else COST_PRICED,
            a_in,
            a_cached,
            a_cw,
            a_cw1h,
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
        cw1h = 0
        for amounts, _, _ in priced:
            scale = div // amounts[-1]
            for i in range(5):
                sums[i] += amounts[i] * scale
            cw1h += amounts[5] * scale
        total = sum(sums)
        a_in, a_cached, a_cw, a_out = (pt.round_half_even(v, div) for v in sums[:4])
        first = priced[0][1]
        models = list(dict.fromkeys(m for _, _, m in priced))
        sources = list(dict.fromkeys(r[pt.R_SOURCE] for _, r, _ in priced))
        versions = list(dict.fromkeys(r[pt.R_VERSION] for _, r, _ in priced))
        return Cost(
            True,
            COST_ESTIMATED if tokens_estimated else COST_PRICED,
            a_in,
            a_cached,
            a_cw,
            pt.round_half_even(cw1h, div),
            a_out,
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


if __name__ == "__main__":  # regenerate the snapshot after upgrading genai-prices
    print(f"wrote {write_snapshot(Path(sys.argv[1]) if len(sys.argv) > 1 else SNAPSHOT_PATH)}")

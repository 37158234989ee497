"""Rate tables: prices compiled into exact integer arithmetic, and the per-event cost kernel.

This module owns the numeric side of pricing (catalogue prices and config overrides compiled
into rate tables and schedules, override validation, rounding); `sidecar.enrich.pricing_models`
owns model resolution and `sidecar.enrich.pricing` the engine and the genai-prices catalogue (it
is the only module that imports genai_prices: here catalogue objects are read by duck typing).

A *spec* is a plain dict of the leaf rates one request pays, in USD per million tokens (Decimal):

    input        uncached, non-cache-write input tokens
    cached       cache reads
    cw5m / cw1h  cache writes with the 5-minute (default) and 1-hour TTL
    output       output tokens that are not reasoning
    reasoning    reasoning tokens
    request_k    a per-request fee, USD per 1,000 requests

A missing catalogue rate falls back to its parent the way genai-prices counts leaves (a model
without a cache-read price bills cache reads as input, without a 1-hour price bills them as cache
writes, without a reasoning price bills reasoning as output).

A *rates* tuple is a compiled spec: every rate an integer in units of 10^-s USD per MTok, with s
chosen per table as the number of decimals the table needs (at least 3). A token count times a
rate is then an exact integer amount in 10^-(s+6) USD, and nano-USD is that amount divided by
10^(s-3), rounded half-even once. Every finite Decimal has such an integer form, so the integer
path is exact for the whole catalogue and for any override (no float, no Decimal per event).

A *schedule* maps an epoch time to rates: `bisect` over UTC-midnight boundaries (price changes),
then, for the few models with off-peak pricing, a second bisect over UTC seconds of the day.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

from sidecar.config import PriceOverride
from sidecar.configload import build
from sidecar.errors import ConfigError

SOURCE_CATALOGUE = "genai-prices"
SOURCE_OVERRIDE = "override"
SPEC_KEYS = ("input", "cached", "cw5m", "cw1h", "output", "reasoning", "request_k")
ZERO = Decimal(0)
DAY_SECS = 86_400

# Indexes into a rates tuple.
R_IN, R_CACHED, R_CW5M, R_CW1H, R_OUT, R_REASON, R_FEE, R_DIV, R_TIERS = range(9)
R_DISPLAY, R_SOURCE, R_VERSION = 9, 10, 11

Rates = tuple[Any, ...]
Spec = dict[str, Decimal]
# (tier start, spec): the spec applies when total input tokens > start (cliff tiers).
TieredSpec = tuple[Spec, tuple[tuple[int, Spec], ...]]
# (day boundaries as epoch secs, segments, has time-of-day split)
Schedule = tuple[list[float], list[Any], bool]

CATALOGUE_KEYS = (  # the catalogue's price keys the engine reads (the snapshot keeps only these)
    "input_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "cache_write_5m_mtok",
    "cache_write_1h_mtok",
    "output_mtok",
    "output_reasoning_mtok",
    "requests_kcount",
)


def leaf_spec(raw: dict[str, Decimal | None]) -> Spec:
    """Leaf rates from catalogue-style keys (`input_mtok`, `cache_read_mtok`...), parents filled."""
    inp = raw.get("input_mtok")
    inp = ZERO if inp is None else inp
    cached = raw.get("cache_read_mtok")
    cw = raw.get("cache_write_mtok")
    cw = inp if cw is None else cw
    cw5m = raw.get("cache_write_5m_mtok")
    cw1h = raw.get("cache_write_1h_mtok")
    out = raw.get("output_mtok")
    out = ZERO if out is None else out
    reasoning = raw.get("output_reasoning_mtok")
    fee = raw.get("requests_kcount")
    return {
        "input": inp,
        "cached": inp if cached is None else cached,
        "cw5m": cw if cw5m is None else cw5m,
        "cw1h": cw if cw1h is None else cw1h,
        "output": out,
        "reasoning": out if reasoning is None else reasoning,
        "request_k": ZERO if fee is None else fee,
    }


def spec_from_model_price(mp: Any) -> TieredSpec | None:
    """A catalogue ModelPrice (duck-typed) as a tiered spec; None when it has no token price.

    Tiers are per price key in the catalogue; here they become one full spec per threshold region
    (the union of every key's thresholds), so one comparison picks every rate of a request.
    """
    values = {key: getattr(mp, key, None) for key in CATALOGUE_KEYS}
    if all(v is None for v in values.values()):
        return None  # e.g. a speech model priced per character or second: not token-priced
    starts = sorted({t.start for v in values.values() if hasattr(v, "tiers") for t in v.tiers})

    def region(threshold: int | None) -> Spec:
        flat: dict[str, Decimal | None] = {}
        for key, v in values.items():
            if v is not None and hasattr(v, "tiers"):
                price = v.base
                if threshold is not None:
                    for tier in v.tiers:  # sorted ascending by genai-prices
                        if tier.start <= threshold:
                            price = tier.price
                flat[key] = price
            else:
                flat[key] = v
        return leaf_spec(flat)

    return region(None), tuple((start, region(start)) for start in starts)


def scale_spec(spec: TieredSpec, factor: Decimal) -> TieredSpec:
    """Every rate times `factor`, exactly (a negotiated discount)."""
    with localcontext() as ctx:
        ctx.prec = 200

        def one(s: Spec) -> Spec:
            return {k: (v * factor).normalize() if v else ZERO for k, v in s.items()}

        base, tiers = spec
        return one(base), tuple((start, one(s)) for start, s in tiers)


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"not a finite price: {value}")
    return max(0, -exponent)


def _display(spec: Spec, tier_start: int | None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "input_usd_per_mtok": str(spec["input"]),
        "cached_input_usd_per_mtok": str(spec["cached"]),
        "cache_write_usd_per_mtok": str(spec["cw5m"]),
        "cache_write_1h_usd_per_mtok": str(spec["cw1h"]),
        "output_usd_per_mtok": str(spec["output"]),
        "reasoning_usd_per_mtok": str(spec["reasoning"]),
    }
    if spec["request_k"]:
        shown["request_usd_per_k"] = str(spec["request_k"])
    if tier_start is not None:
        shown["tier_above_input_tokens"] = tier_start
    return shown


def compile_rates(spec: TieredSpec, source: str, version: str) -> Rates:
    """A tiered spec as integer rates tuple(s) sharing one scale (checked exact)."""
    base, tiers = spec
    specs = [base, *(s for _, s in tiers)]
    for s in specs:
        for key in SPEC_KEYS:
            if s[key] < 0 or not s[key].is_finite():
                raise ValueError(f"invalid {key} price {s[key]}")
    scale = max(3, *(_decimals(v) for s in specs for v in s.values()))
    div = 10 ** (scale - 3)

    def one(s: Spec, tier_start: int | None, sub_tiers: tuple[Any, ...]) -> Rates:
        ints: list[int] = []
        for key in SPEC_KEYS:
            scaled = s[key].scaleb(scale)
            as_int = int(scaled)
            if as_int != scaled:  # cannot happen by construction; the check guards the claim
                raise ArithmeticError(f"{key} price {s[key]} is not exact at scale 1e-{scale}")
            ints.append(as_int)
        ints[6] *= 1000  # request fee: USD per 1000 requests -> 10^-(s+6) USD per request
        return (*ints, div, sub_tiers, _display(s, tier_start), source, version)

    regions = tuple((start, one(s, start, ())) for start, s in sorted(tiers, key=lambda t: -t[0]))
    return one(base, None, regions)


def zero_rates(source: str, version: str) -> Rates:
    """A free model: every rate 0, cost known."""
    return compile_rates((leaf_spec({}), ()), source, version)


def round_half_even(amount: int, div: int) -> int:
    """`amount / div` rounded half to even (amount >= 0)."""
    q, r = divmod(amount, div)
    r2 = r + r
    if r2 > div or (r2 == div and q & 1):
        q += 1
    return q


def exact_amounts(
    rates: Rates,
    input_tokens: int,
    cached: int,
    cache_write: int,
    cache_write_1h: int,
    output_tokens: int,
    reasoning: int,
) -> tuple[int, int, int, int, int, int, int]:
    """Exact component amounts (input, cached, cache write, output, request fee), the 1-hour
    part of the cache write (already in the cache write amount), and the divisor.

    Amounts are in 10^-(s+6) USD; divide by the last element (10^(s-3)) for nano-USD. Inputs are
    normalised counts (input includes cache; output includes reasoning); inconsistent counts are
    clamped so that no component goes negative.
    """
    tiers = rates[R_TIERS]
    if tiers:
        for start, sub in tiers:
            if input_tokens > start:
                rates = sub
                break
    uncached = input_tokens - cached - cache_write
    if uncached < 0:
        uncached = 0
    if cache_write_1h > cache_write:
        cache_write_1h = cache_write
    if reasoning > output_tokens:
        reasoning = output_tokens
    cw1h = cache_write_1h * rates[R_CW1H]
    return (
        uncached * rates[R_IN],
        cached * rates[R_CACHED],
        (cache_write - cache_write_1h) * rates[R_CW5M] + cw1h,
        (output_tokens - reasoning) * rates[R_OUT] + reasoning * rates[R_REASON],
        rates[R_FEE],
        cw1h,
        rates[R_DIV],
    )


def select_tier(rates: Rates, input_tokens: int) -> Rates:
    """The rates of the tier region `input_tokens` falls in."""
    for start, sub in rates[R_TIERS]:
        if input_tokens > start:
            return sub
    return rates


def epoch_of(day: date) -> float:
    """UTC midnight of `day` as epoch seconds."""
    return datetime.combine(day, time(0), tzinfo=UTC).timestamp()


def utc_seconds_of_day(t: time) -> int:
    """A time of day (naive = UTC) as UTC seconds since midnight."""
    if t.tzinfo is not None:
        t = datetime.combine(date(1970, 1, 2), t).astimezone(UTC).time()
    return t.hour * 3600 + t.minute * 60 + t.second


def build_schedule(
    start_dates: Iterable[date],
    tod_points: Iterable[int],
    rates_at: Callable[[datetime], Rates | None],
) -> Schedule:
    """Sample `rates_at` once per (date period, time-of-day interval) and index the result.

    `start_dates` are the UTC dates on which any price may change; `tod_points` the UTC seconds of
    the day at which an off-peak window opens or closes. Within one cell every constraint is
    constant, so one sample per cell is the exact price for the whole cell.
    """
    days = sorted(set(start_dates))
    points = sorted({0, *(p % DAY_SECS for p in tod_points)})
    tod = len(points) > 1
    starts = [days[0] - timedelta(days=1) if days else date(2000, 1, 1), *days]
    segs: list[Any] = []
    for day in starts:
        midnight = datetime.combine(day, time(0), tzinfo=UTC)
        if tod:
            cells = [rates_at(midnight + timedelta(seconds=p)) for p in points]
            segs.append((points[1:], cells))
        else:
            segs.append(rates_at(midnight))
    return [epoch_of(d) for d in days], segs, tod


def rates_at_time(schedule: Schedule, at: float) -> Rates | None:
    """The rates in force at epoch `at` (None: no price then)."""
    bounds, segs, tod = schedule
    seg = segs[bisect_right(bounds, at)] if bounds else segs[0]
    if tod:
        points, cells = seg
        return cells[bisect_right(points, at % DAY_SECS)]
    return seg


# -- overrides (config `pricing.overrides` / `pricing.overrides_file`) ----------------------


@dataclass(frozen=True, slots=True)
class Override:
    """One validated override: free, a discount off the catalogue, or explicit prices."""

    model: str  # lower-cased
    provider: str | None
    effective_from: date | None
    free: bool
    factor: Decimal | None  # discount: multiply catalogue rates by this
    spec: TieredSpec | None  # explicit prices
    version: str

    def rates_at(self, catalogue_spec: TieredSpec | None) -> Rates | None:
        if self.free:
            return zero_rates(SOURCE_OVERRIDE, self.version)
        if self.spec is not None:
            return compile_rates(self.spec, SOURCE_OVERRIDE, self.version)
        if catalogue_spec is None or self.factor is None:
            return None  # a discount on a model the catalogue does not price
        return compile_rates(scale_spec(catalogue_spec, self.factor), SOURCE_OVERRIDE, self.version)


def _decimal(value: str | None, where: str) -> Decimal | None:
    if value is None:
        return None
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(
            where, f"{value!r} is not a decimal number", "write e.g. '2.50'"
        ) from None
    if not d.is_finite() or d < 0:
        raise ConfigError(where, f"{value!r} must be a finite number >= 0")
    return d


def compile_override(o: PriceOverride, where: str) -> Override:
    """Validate one override and compile it (ConfigError naming the key on any mistake)."""
    if not o.model or not o.model.strip():
        raise ConfigError(f"{where}.model", "an override needs a model name")
    eff: date | None = None
    if o.effective_from:
        try:
            eff = date.fromisoformat(str(o.effective_from).strip()[:10])
        except ValueError:
            raise ConfigError(
                f"{where}.effective_from", f"{o.effective_from!r} is not an ISO date", "2025-01-31"
            ) from None
    prices = {
        "input_mtok": _decimal(o.input_usd_per_mtok, f"{where}.input_usd_per_mtok"),
        "cache_read_mtok": _decimal(
            o.cached_input_usd_per_mtok, f"{where}.cached_input_usd_per_mtok"
        ),
        "cache_write_mtok": _decimal(
            o.cache_write_usd_per_mtok, f"{where}.cache_write_usd_per_mtok"
        ),
        "output_mtok": _decimal(o.output_usd_per_mtok, f"{where}.output_usd_per_mtok"),
    }
    pct = _decimal(o.discount_pct, f"{where}.discount_pct")
    explicit = any(v is not None for v in prices.values())
    kinds = [
        k
        for k, on in (("free", o.free), ("discount_pct", pct is not None), ("prices", explicit))
        if on
    ]
    if len(kinds) != 1:
        raise ConfigError(
            where,
            "an override needs exactly one of: free, discount_pct, explicit prices"
            + (f" (got {', '.join(kinds)})" if kinds else ""),
            "e.g. input_usd_per_mtok: '2.5' and output_usd_per_mtok: '10'",
        )
    spec: TieredSpec | None = None
    factor: Decimal | None = None
    if explicit:
        for key, field_name in (("input_mtok", "input"), ("output_mtok", "output")):
            if prices[key] is None:
                raise ConfigError(
                    f"{where}.{field_name}_usd_per_mtok",
                    "explicit prices need both input_usd_per_mtok and output_usd_per_mtok",
                    "write '0' for a part that is free",
                )
        spec = (leaf_spec(prices), ())
        compile_rates(spec, SOURCE_OVERRIDE, "")  # validates exactness up front
    if pct is not None:
        if pct > 100:
            raise ConfigError(f"{where}.discount_pct", f"{pct} is more than 100")
        factor = (Decimal(100) - pct).scaleb(-2)
    version = f"override:{eff.isoformat()}" if eff else "override"
    provider = o.provider.strip().lower() if o.provider else None
    return Override(o.model.strip().lower(), provider, eff, o.free, factor, spec, version)


def load_overrides_file(path: Path) -> list[PriceOverride]:
    """Read a YAML list of overrides (or a mapping with an `overrides` list)."""
    import yaml  # only when an overrides file is configured (start-up cost)

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot read the overrides file: {exc.strerror or exc}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    if isinstance(data, dict) and set(data) == {"overrides"}:
        data = data["overrides"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(str(path), "expected a YAML list of overrides")
    return [build(PriceOverride, item, f"{path}[{i}]") for i, item in enumerate(data)]

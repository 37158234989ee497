"""The compact price catalogue: genai-prices' providers and models as a small JSON snapshot.

Importing genai-prices builds its whole catalogue (pydantic, an HTTP client for price updates,
thousands of objects) before the first event can be priced; that is most of the sidecar's
start-up time and memory. The snapshot (`pricing_snapshot.json`, written by
`python -m sidecar.enrich.pricing`) keeps only what pricing reads: each provider's id, model and
provider match rules and fallback providers, and each model's id, match rule, token prices (the
keys `pricing_table` reads, as decimal strings), dated/off-peak constraints and service-tier
variants. It is stamped with a digest of the genai-prices source it was written from; the engine
(`sidecar.enrich.pricing`, the only module that imports genai_prices) uses it only when that
digest matches the installed package and otherwise loads genai-prices itself.

The classes here mirror the duck-typed surface `pricing_models` and `pricing_table` read from
genai-prices objects (`Provider.find_model`, `model_match`, `ModelInfo.prices`,
`price_variants`, `get_prices`), with genai-prices' own matching and price-selection rules, so
name resolution and money are the same either way (a test compares both on the whole catalogue).
A model's prices are parsed into Decimals on its first use, not at load.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import orjson

from sidecar.enrich.pricing_table import CATALOGUE_KEYS

SNAPSHOT_FORMAT = 1

# The ModelPrice keys the engine reads; nothing else is kept.
PRICE_KEYS = CATALOGUE_KEYS

# -- writing a snapshot from genai-prices objects (duck-typed) --------------------------------

_CLAUSE_FIELDS = (
    ("starts_with", "sw"),
    ("ends_with", "ew"),
    ("contains", "c"),
    ("regex", "re"),
    ("equals", "eq"),
)


def _clause_out(clause: Any) -> list[Any] | None:
    if clause is None:
        return None
    for attr, tag in _CLAUSE_FIELDS:
        if hasattr(clause, attr):
            return [tag, getattr(clause, attr)]
    if hasattr(clause, "or_"):
        return ["or", [_clause_out(c) for c in clause.or_]]
    if hasattr(clause, "and_"):
        return ["and", [_clause_out(c) for c in clause.and_]]
    raise ValueError(f"unknown genai-prices match clause {clause!r}")


def _constraint_out(c: Any) -> list[str] | None:
    if c is None:
        return None
    if hasattr(c, "start_date"):
        return ["d", c.start_date.isoformat()]
    return ["t", c.start_time.isoformat(), c.end_time.isoformat()]


def _price_out(mp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in PRICE_KEYS:
        v = getattr(mp, key, None)
        if v is None:
            continue
        if hasattr(v, "tiers"):
            out[key] = [str(v.base), [[t.start, str(t.price)] for t in v.tiers]]
        else:
            out[key] = str(v)
    return out


def _model_out(model: Any) -> list[Any]:
    prices = model.prices
    conds = (
        [[_constraint_out(c.constraint), _price_out(c.prices)] for c in prices]
        if isinstance(prices, list)
        else [[None, _price_out(prices)]]
    )
    variants = [
        [dict(v.when), _constraint_out(v.constraint), _price_out(v.prices)]
        for v in model.price_variants or ()
    ]
    return [model.id, _clause_out(model.match), conds, variants]


def snapshot_from_providers(providers: list[Any], version: str, digest: str) -> dict[str, Any]:
    """The JSON-able snapshot of genai-prices `providers` (see module doc)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "version": version,
        "source_digest": digest,
        "providers": [
            {
                "id": p.id,
                "model_match": _clause_out(p.model_match),
                "provider_match": _clause_out(p.provider_match),
                "fallback": list(p.fallback_model_providers or []),
                "models": [_model_out(m) for m in p.models],
            }
            for p in providers
        ],
    }


def dump_snapshot(snapshot: dict[str, Any]) -> bytes:
    """The snapshot as JSON with one model per line (reviewable diffs on a catalogue upgrade)."""

    def fields(d: dict[str, Any], drop: str) -> bytes:
        return orjson.dumps({k: v for k, v in d.items() if k != drop})[:-1]  # '{...' without '}'

    providers = snapshot["providers"]
    out = [fields(snapshot, "providers") + b',"providers":[']
    for i, p in enumerate(providers):
        out.append(fields(p, "models") + b',"models":[')
        out.append(b",\n".join(orjson.dumps(m) for m in p["models"]))
        out.append(b"]}" + (b"," if i < len(providers) - 1 else b""))
    out.append(b"]}\n")
    return b"\n".join(out)


# -- reading it: the duck-typed surface of genai-prices' catalogue ------------------------------


def _matches(clause: list[Any], text: str) -> bool:
    """genai-prices' match clauses (case-insensitive except regex, which searches `text`)."""
    tag, arg = clause
    if tag == "eq":
        return text.lower() == arg.lower()
    if tag == "sw":
        return text.lower().startswith(arg.lower())
    if tag == "c":
        return arg.lower() in text.lower()
    if tag == "ew":
        return text.lower().endswith(arg.lower())
    if tag == "re":
        return re.search(arg, text) is not None
    if tag == "or":
        return any(_matches(c, text) for c in arg)
    return all(_matches(c, text) for c in arg)  # "and"


class Clause:
    """A match rule (`is_match`, as genai-prices' Clause* classes)."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[Any]) -> None:
        self.raw = raw

    def is_match(self, text: str) -> bool:
        return _matches(self.raw, text)


class StartDate:
    """A price that starts on a UTC date (genai-prices StartDateConstraint)."""

    __slots__ = ("start_date",)

    def __init__(self, start_date: date) -> None:
        self.start_date = start_date

    def active(self, ts: datetime) -> bool:
        if ts.tzinfo is not None:
            ts = ts.astimezone(UTC)
        return ts.date() >= self.start_date


def _utc_timetz(value: time) -> time:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return datetime.combine(date(1970, 1, 1), value).astimezone(UTC).timetz()


class TimeOfDay:
    """A daily window (genai-prices TimeOfDateConstraint; naive times are UTC)."""

    __slots__ = ("end_time", "start_time")

    def __init__(self, start_time: time, end_time: time) -> None:
        self.start_time = start_time
        self.end_time = end_time

    def active(self, ts: datetime) -> bool:
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        now = ts.astimezone(UTC).timetz()
        start = _utc_timetz(self.start_time)
        end = _utc_timetz(self.end_time)
        if end < start:
            return now >= start or now < end
        return start <= now < end


def _constraint_in(raw: list[str] | None) -> StartDate | TimeOfDay | None:
    if raw is None:
        return None
    if raw[0] == "d":
        return StartDate(date.fromisoformat(raw[1]))
    return TimeOfDay(time.fromisoformat(raw[1]), time.fromisoformat(raw[2]))


class Tier:
    __slots__ = ("price", "start")

    def __init__(self, start: int, price: Decimal) -> None:
        self.start = start
        self.price = price


class Tiered:
    """Cliff-tiered prices (genai-prices TieredPrices: `base`, ascending `tiers`)."""

    __slots__ = ("base", "tiers")

    def __init__(self, base: Decimal, tiers: list[Tier]) -> None:
        self.base = base
        self.tiers = tiers


class Prices:
    """A set of token prices; a key the model has no price for reads as None."""

    def __init__(self, values: dict[str, Decimal | Tiered]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> None:
        if name in PRICE_KEYS:
            return None
        raise AttributeError(name)


def _prices_in(raw: dict[str, Any]) -> dict[str, Decimal | Tiered]:
    out: dict[str, Decimal | Tiered] = {}
    for key, v in raw.items():
        if isinstance(v, str):
            out[key] = Decimal(v)
        else:
            out[key] = Tiered(Decimal(v[0]), [Tier(s, Decimal(p)) for s, p in v[1]])
    return out


class Conditional:
    __slots__ = ("constraint", "prices")

    def __init__(self, constraint: StartDate | TimeOfDay | None, prices: dict[str, Any]) -> None:
        self.constraint = constraint
        self.prices = prices  # decimal values by key


class Variant:
    __slots__ = ("constraint", "prices", "when")

    def __init__(
        self, when: dict[str, str], constraint: StartDate | TimeOfDay | None, prices: dict[str, Any]
    ) -> None:
        self.when = when
        self.constraint = constraint
        self.prices = prices


class Model:
    """One catalogue model; its prices are parsed on first use."""

    __slots__ = ("_conds", "_raw", "_variants", "id", "match")

    def __init__(self, raw: list[Any]) -> None:
        self.id: str = raw[0]
        self.match = Clause(raw[1])
        self._raw: list[Any] | None = raw
        self._conds: list[Conditional] = []
        self._variants: list[Variant] = []

    def _load(self) -> None:
        raw = self._raw
        if raw is None:
            return
        self._conds = [Conditional(_constraint_in(c), _prices_in(p)) for c, p in raw[2]]
        self._variants = [Variant(w, _constraint_in(c), _prices_in(p)) for w, c, p in raw[3]]
        self._raw = None

    @property
    def prices(self) -> list[Conditional]:
        self._load()
        return self._conds

    @property
    def price_variants(self) -> list[Variant]:
        self._load()
        return self._variants

    def is_match(self, model_ref: str) -> bool:
        return _matches(self.match.raw, model_ref.lower())

    def get_prices(self, ts: datetime, ctx: dict[str, str] | None = None) -> Prices:
        """The prices in force at `ts` for request context `ctx` (genai-prices get_prices)."""
        conds = self.prices
        standard = conds[0].prices
        for cond in reversed(conds):  # the last active conditional price wins
            if cond.constraint is None or cond.constraint.active(ts):
                standard = cond.prices
                break
        if not ctx:
            return Prices(standard)
        overrides: dict[str, Any] = {}
        for v in self._variants:
            if v.constraint is not None and not v.constraint.active(ts):
                continue
            if not all(ctx.get(k) == val for k, val in v.when.items()):
                continue
            for key, price in v.prices.items():
                overrides.setdefault(key, price)
        return Prices({**standard, **overrides})


_COMPACT_DATE_RE = re.compile(r"(-)(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")


def _normalize_compact_dated_ref(model_ref: str) -> str:
    """`-20251211` -> `-2025-12-11` where it is a real date (as genai-prices does)."""

    def replace(m: re.Match[str]) -> str:
        year, month, day = (int(m.group(i)) for i in range(2, 5))
        try:
            date(year, month, day)
        except ValueError:
            return m.group(0)
        return f"{m.group(1)}{year:04d}-{month:02d}-{day:02d}"

    return _COMPACT_DATE_RE.sub(replace, model_ref)


class Provider:
    """One catalogue provider, with genai-prices' `find_model` rules (fallback providers too)."""

    __slots__ = ("fallback_model_providers", "id", "model_match", "models", "provider_match")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.id: str = raw["id"]
        self.model_match = Clause(raw["model_match"]) if raw["model_match"] else None
        self.provider_match = Clause(raw["provider_match"]) if raw["provider_match"] else None
        self.fallback_model_providers: list[str] = raw["fallback"]
        self.models = [Model(m) for m in raw["models"]]

    def find_model(self, model_ref: str, *, all_providers: list[Any] | None = None) -> Any:
        model_ref = model_ref.lower()
        if model := self._match_model(model_ref, all_providers):
            return model
        normalized = _normalize_compact_dated_ref(model_ref)
        if normalized != model_ref:
            return self._match_model(normalized, all_providers)
        return None

    def _match_model(self, model_ref: str, all_providers: list[Any] | None = None) -> Any:
        for model in self.models:
            if _matches(model.match.raw, model_ref):
                return model
        if self.fallback_model_providers and all_providers:
            for provider_id in self.fallback_model_providers:
                provider = next((p for p in all_providers if p.id == provider_id), None)
                # one step of fallback only, as in genai-prices
                if provider and (model := provider._match_model(model_ref)):
                    return model
        return None


def providers_from_snapshot(snapshot: dict[str, Any]) -> list[Provider]:
    """The snapshot's providers, in catalogue order."""
    if snapshot.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"unknown pricing snapshot format {snapshot.get('format')!r}")
    return [Provider(p) for p in snapshot["providers"]]


def find_provider_by_id(providers: list[Any], provider_id: str) -> Any | None:
    """A provider by id, else by its provider match rule (genai-prices find_provider_by_id)."""
    wanted = provider_id.lower().strip()
    for p in providers:
        if p.id == wanted:
            return p
    for p in providers:
        if p.provider_match and p.provider_match.is_match(wanted):
            return p
    return None

"""Model resolution for pricing: what a served (provider, model) name is priced as.

Owns the resolution order, the normalised spellings of a model name, the mapping of the sidecar's
provider names to catalogue provider ids, the bounded LRU of resolutions (hits and misses), and
the resolved `Entry` with its per-service-tier schedules, compiled on first use. The pricing
engine (`sidecar.enrich.pricing`, the only module that imports genai_prices) hands in its
catalogue; here catalogue providers and models are read by duck typing.

Resolution order for a model name (after `pricing.aliases`):
1. the provider named by the sidecar (openai, azure, anthropic, gemini/vertex -> google, bedrock
   spellings -> aws, or any genai-prices provider id), using genai-prices' own match rules
   (dated snapshots, `-latest`, `models/...` and so on), with the name as given and normalised
   (provider prefixes `openai/...`, `publishers/google/models/...`, Vertex `@date`, Bedrock
   `us.anthropic.<id>-v1:0`, a trailing snapshot date);
2. the provider whose model rules claim the name; 3. every provider (openrouter last).

A config override is then looked up by (provider, model) or (any provider, model), where model is
the served name after aliases, the raw name, or the catalogue model id it resolved to.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sidecar.enrich import pricing_table as pt
from sidecar.enrich.pricing_table import SOURCE_CATALOGUE

_MAX_TIERS_PER_MODEL = 32  # distinct service-tier strings kept per model; others share standard

# Sidecar provider names -> genai-prices provider ids.
_PROVIDER_IDS = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
    "vertex": "google",
    "google": "google",
    "bedrock": "aws",
    "aws": "aws",
}
_NO_PROVIDER = frozenset({"", "other", "auto", "none"})

_BEDROCK = re.compile(
    r"^(?:(?:us|eu|apac|ap|au|ca|jp|us-gov|global)\.)?"
    r"(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer|twelvelabs"
    r"|stability|minimax|moonshot|moonshotai|nvidia|google)\.(.+)$"
)
_BEDROCK_VERSION = re.compile(r"(?:-v\d+(?::\d+)?|:\d+)$")
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|20\d{6})$")


def catalogue_provider_id(name: str | None) -> str | None:
    """The catalogue provider id for a sidecar provider name; None when no provider is named."""
    if name is None or name in _NO_PROVIDER:
        return None
    return _PROVIDER_IDS.get(name, name)


def model_candidates(name: str) -> list[str]:
    """A lower-cased model name and its normalised spellings, most specific first."""
    out = [name]
    s = name
    if "/" in s:
        s = s.rsplit("/", 1)[1]
        out.append(s)
    if "@" in s:
        base, _, version = s.partition("@")
        out += [f"{base}-{version}", base]
        s = base
    if m := _BEDROCK.match(s):
        inner = m.group(1)
        out.append(inner)
        s = _BEDROCK_VERSION.sub("", inner)
        out.append(s)
    undated = _DATE_SUFFIX.sub("", s)
    if undated != s:
        out.append(undated)
    return list(dict.fromkeys(c for c in out if c))


def find_model(catalogue: Any, provider: str | None, name: str) -> tuple[Any, Any] | None:
    """(catalogue provider, catalogue model) for a lower-cased model name, or None.

    `catalogue` has `providers`, `search_order` (openrouter last) and `provider(name)`.
    """
    candidates = model_candidates(name)
    hinted: list[Any] = []
    if any(_BEDROCK.match(c) for c in candidates):
        hinted.append(catalogue.provider("aws"))
    hinted.append(catalogue.provider(provider))
    if "/" in name:
        hinted.append(catalogue.provider(name.split("/", 1)[0]))
    seen: set[str] = set()
    for prov in hinted:
        if prov is None or prov.id in seen:
            continue
        seen.add(prov.id)
        for cand in candidates:
            if model := prov.find_model(cand, all_providers=catalogue.providers):
                return prov, model
    for cand in candidates:  # the provider whose model rules claim the name (genai-prices)
        for prov in catalogue.providers:
            if prov.model_match is not None and prov.model_match.is_match(cand):
                if model := prov.find_model(cand, all_providers=catalogue.providers):
                    return prov, model
                break
    for cand in candidates:
        for prov in catalogue.search_order:
            if model := prov.find_model(cand):
                return prov, model
    return None


def price_context(service_tier: str | None) -> dict[str, str] | None:
    """genai-prices request context for a service tier (None: standard prices)."""
    if not service_tier:
        return None
    tier = service_tier.strip().lower()
    ctx = {"service_tier": tier}
    if tier == "batch":
        ctx["processing"] = "batch"
    elif tier == "fast":
        ctx["speed"] = "fast"
    return ctx


class Entry:
    """A resolved (provider, model): catalogue model and/or overrides, and per-tier schedules."""

    __slots__ = ("_model", "_overrides", "_own", "_tiers", "_version", "pricing_model", "schedules")

    def __init__(
        self,
        pricing_model: str,
        provider: Any | None,
        model: Any | None,
        overrides: list[pt.Override],
        version: str,
    ) -> None:
        self.pricing_model = pricing_model
        self._model = model
        self._own = provider is not None and any(model is m for m in provider.models)
        self._overrides = sorted(overrides, key=lambda o: o.effective_from or date.min)
        self._version = version
        self._tiers: set[tuple[tuple[str, str], ...]] = set()
        if model is not None and self._own:
            self._tiers = {tuple(sorted(v.when.items())) for v in model.price_variants or ()}
        self.schedules: dict[str | None, pt.Schedule] = {}

    def schedule(self, service_tier: str | None) -> pt.Schedule:
        """Compile (once) the schedule for a service tier."""
        ctx = price_context(service_tier)
        if ctx is not None and not any(all(ctx.get(k) == v for k, v in w) for w in self._tiers):
            ctx = None  # no variant for this tier: the standard price
        if ctx is None and service_tier is not None:
            sched = self.schedules.get(None) or self.schedule(None)
        else:
            sched = self._compile(ctx)
        if len(self.schedules) < _MAX_TIERS_PER_MODEL:
            self.schedules[service_tier] = sched
        return sched

    def _compile(self, ctx: dict[str, str] | None) -> pt.Schedule:
        model = self._model
        days: set[date] = {o.effective_from for o in self._overrides if o.effective_from}
        tod: set[int] = set()
        if model is not None:
            constraints = (
                [c.constraint for c in model.prices] if isinstance(model.prices, list) else []
            )
            if ctx is not None:
                constraints += [v.constraint for v in model.price_variants or ()]
            for c in constraints:
                if c is None:
                    continue
                if hasattr(c, "start_date"):
                    days.add(c.start_date)
                else:
                    tod.add(pt.utc_seconds_of_day(c.start_time))
                    tod.add(pt.utc_seconds_of_day(c.end_time))

        def catalogue_spec(dt: datetime) -> pt.TieredSpec | None:
            if model is None:
                return None
            return pt.spec_from_model_price(model.get_prices(dt, ctx))

        def rates_at(dt: datetime) -> pt.Rates | None:
            active = None
            for o in self._overrides:
                if o.effective_from is None or o.effective_from <= dt.date():
                    active = o
            if active is not None:
                return active.rates_at(catalogue_spec(dt) if active.factor is not None else None)
            spec = catalogue_spec(dt)
            return None if spec is None else pt.compile_rates(spec, SOURCE_CATALOGUE, self._version)

        return pt.build_schedule(days, tod, rates_at)


class ModelResolver:
    """(served provider, served model) -> Entry or None, through aliases, the catalogue and the
    overrides index; `lookup` is the bounded LRU of these resolutions."""

    def __init__(
        self,
        catalogue: Any,
        aliases: Mapping[str, str],
        overrides: Mapping[tuple[str | None, str], list[pt.Override]],
        maxsize: int,
    ) -> None:
        self.catalogue = catalogue
        self._aliases = dict(aliases)
        self._aliases_lower = {k.lower(): v for k, v in aliases.items()}
        self._overrides = overrides
        self.lookup = functools.lru_cache(maxsize=maxsize)(self._resolve)

    def _resolve(self, provider: str | None, model: str | None) -> Entry | None:
        if not model:
            return None
        raw = model.strip()
        name = self._aliases.get(raw) or self._aliases_lower.get(raw.lower()) or raw
        name_l = name.lower()
        prov_l = provider.strip().lower() if provider else None
        found = find_model(self.catalogue, prov_l, name_l)
        names = [name_l, raw.lower()]
        if found is not None:
            names.append(found[1].id.lower())
        overrides: list[pt.Override] = []
        for n in names:
            overrides = self._overrides.get((prov_l, n)) or self._overrides.get((None, n)) or []
            if overrides:
                break
        if found is None and not overrides:
            return None
        if found is None:
            return Entry(overrides[0].model, None, None, overrides, self.catalogue.version)
        return Entry(found[1].id, found[0], found[1], overrides, self.catalogue.version)

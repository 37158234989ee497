"""Token estimation for requests whose body carries no usage (cancelled, no include_usage, errors).

This module owns the estimate, its calibration and its metrics. `sidecar.enrich.tokenizer` (the
only module that imports tiktoken) owns the encodings; `sidecar.enrich.input_tokens` renders a
logged request into what its provider bills; `sidecar.enrich.output_rules` corrects the output's
overheads with what the request says; `sidecar.enrich.calibration` keeps the per-model state;
`sidecar.enrich.timing` reads a stream's chunk times. The rules and constants are documented,
with their measured error, in `docs/estimation.md`.

Output (visible)
    The parsers hand over `ParsedBody.output_text` (each string counted on its own and summed:
    OpenAI deltas are one token each, Anthropic and Gemini blocks are whole) and
    `output_extra_tokens` (per-item framing the provider bills: tool calls, end of message).
    A compacted stream adds the join's `prior_text` / `prior_extra_tokens`.
Hidden reasoning (OpenAI o-series / gpt-5, Gemini thinking)
    Hidden tokens cannot be counted from text, and no ratio of visible text is ever applied:
    they are estimated from time. From complete streams that report `reasoning_tokens`, each
    model learns its hidden-token rate (reasoning tokens / seconds from the request's start to
    the first visible chunk) and its visible rate; a cut or usage-less stream's hidden tokens are
    that rate times how long it ran without visible output (`token_source: estimated_timing`).
    Until a model has `MIN_TIMING_SAMPLES`, a conservative `DEFAULT_HIDDEN_RATE` is used and the
    figure is flagged a lower bound, as it is when the stream's first visible moment is only
    bounded (compacted by the join). A stream with only hidden tokens gets an estimate, never
    null.
Calibration (tokenizers that are not tiktoken's: Anthropic, Gemini, others)
    Complete streams are sampled (`wants_sample`) and observed (`observe`): per model, the
    ratio (reported output - fixed overheads) / counted text of the last `WINDOW` samples,
    skipping degenerate outputs (mostly whitespace, such as thousands of newlines, or a ratio
    outside `RATIO_BOUNDS`). The estimate uses their median. Each observation first measures, on
    the sample it has not learned from yet, the error of the raw count and of the calibrated one;
    calibration stays applied only while it beats the raw count on those held-out samples.
    OpenAI models are counted with their own encoding and are not scaled.
    The same is done for input when the request body is logged.

Determinism: estimates depend only on the window's contents (medians, integer rounding), so
replaying the same requests in the same order gives the same figures; after a restart the state
starts empty (not persisted), so a replayed request gets the uncalibrated figure until the model
has `MIN_CALIBRATION_SAMPLES` again. No text is kept or logged: only counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

import orjson

from sidecar.config import Tokens
from sidecar.enrich.calibration import (
    MIN_SAMPLE_TOKENS,
    RATIO_BOUNDS,
    ModelStats,
    ape,
    is_degenerate,
    mean,
)
from sidecar.enrich.input_tokens import render_request
from sidecar.enrich.output_rules import (
    ANTHROPIC_ANY_PREFILL_TOKENS,
    ANTHROPIC_TOOL_PREFILL_TOKENS,
    END_MARK_TOKENS,
    FORCED_CALL_TOKENS,
    LENGTH_REASONS,
    end_tokens,
    output_hints,
)
from sidecar.enrich.timing import StreamTiming
from sidecar.enrich.tokenizer import (
    BUNDLED_DIR,
    ENCODINGS,
    Encoder,
    count,
    count_all,
    encoder_states,
    encoding_for,
    get_encoder,
    is_reasoning_family,
    normalise_model,
)
from sidecar.types import (
    TOKENS_ESTIMATED_CALIBRATED,
    TOKENS_ESTIMATED_HEURISTIC,
    TOKENS_ESTIMATED_TIKTOKEN,
    TOKENS_ESTIMATED_TIMING,
    ParsedBody,
)

WARMUP_SAMPLES = 20  # wants_sample: the first N completed streams of a model are all sampled
MAX_MODELS = 1000  # models tracked for calibration; beyond, new models are not calibrated
# Hidden reasoning (gpt-5-mini pool: an OpenAI reasoning model's answer bills ~10 tokens beyond
# its visible text and end token: the switch from the hidden channel to the final one; not
# applied to other providers, whose answer counts hold no such framing).
REASONING_ANSWER_TOKENS = 10
DEFAULT_HIDDEN_RATE = 20.0  # tokens/s before a model has learned its own: a lower bound
MIN_HIDDEN_SECS = 0.05  # a shorter wait says nothing about a rate
MIN_VISIBLE_SECS = 0.2
MAX_RATE = 2000.0  # tokens/s; above, a sample's times are broken


@dataclass(slots=True)
class Estimate:
    input_tokens: int | None  # from the request body when given, else None
    output_tokens: int  # visible + hidden reasoning
    reasoning_tokens: int | None  # None: the model reasoned, the share is unknown
    token_source: str  # estimated_tiktoken | _calibrated | _timing | _heuristic
    calibration_ratio: float | None
    lower_bound: bool  # the true figure is likely higher (hidden tokens not fully counted)
    input_media_uncounted: int = 0  # images / audio / files in the request, not counted


class TokenEstimator:
    def __init__(self, cfg: Tokens) -> None:
        self.cfg = cfg
        self._models: dict[str, ModelStats] = {}
        self._heuristic_fallbacks = 0  # counts made with the character heuristic
        self._estimates: dict[str, int] = {}  # token_source -> estimates made

    # --- counting -----------------------------------------------------------------------------

    def _encoder(self, model: str | None) -> Encoder | None:
        return get_encoder(encoding_for(model)[0], self.cfg.encodings_dir)

    def _count_texts(self, enc: Encoder | None, texts: Sequence[str]) -> int:
        if enc is not None:
            return count_all(enc, texts)
        if any(texts):
            self._heuristic_fallbacks += 1
        return sum(count(enc, t) for t in texts)

    def count_output(
        self, parsed: ParsedBody, model: str | None, prior_text: Sequence[str] = ()
    ) -> int:
        """Tokens of the output text (prior_text + output_text), uncalibrated, no overheads."""
        enc = self._encoder(model)
        return self._count_texts(enc, prior_text) + self._count_texts(enc, parsed.output_text)

    @staticmethod
    def _load_request(request_body: str | None) -> dict[str, Any] | None:
        if not request_body:
            return None
        try:
            body = orjson.loads(request_body)
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None

    def _render_input(
        self, request_body: str | None, model: str | None
    ) -> tuple[int, int, int] | None:
        """(counted text tokens, fixed framing tokens, media parts not counted) of a request."""
        body = self._load_request(request_body)
        if body is None:
            return None
        r = render_request(body, model)
        if r is None:
            return None
        enc = self._encoder(model or (body.get("model") if isinstance(body, dict) else None))
        return self._count_texts(enc, r.texts) + r.token_ids, r.fixed, r.media_parts

    def count_input(self, request_body: str | None, model: str | None) -> int | None:
        """Input tokens of a logged JSON request (uncalibrated); None when it cannot be read."""
        found = self._render_input(request_body, model)
        return max(0, found[0] + found[1]) if found is not None else None

    def _stats(self, model: str | None, create: bool) -> ModelStats | None:
        if not model:
            return None
        key = normalise_model(model)
        if not key:
            return None
        stats = self._models.get(key)
        if stats is None and create and len(self._models) < MAX_MODELS:
            stats = self._models[key] = ModelStats()
        return stats

    def reasons_hidden(self, parsed: ParsedBody, model: str | None) -> bool:
        """Whether this stream's model reasons in hidden tokens (then timing matters)."""
        return self._hidden_reasoning(parsed, model or parsed.model, self._stats(model, False))

    def _hidden_reasoning(
        self, parsed: ParsedBody, model: str | None, stats: ModelStats | None
    ) -> bool:
        """Whether the model reasons in hidden tokens (Anthropic thinking is visible text)."""
        if is_reasoning_family(model) or (stats is not None and stats.reasoning_seen):
            return True
        return parsed.reasoning_model_hint and parsed.provider != "anthropic"

    # --- public API ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load both encodings now (about 1 s, blocking) rather than at the first estimate."""
        for name in ENCODINGS:
            get_encoder(name, self.cfg.encodings_dir)

    def estimate(
        self,
        parsed: ParsedBody,
        *,
        model: str | None,
        request_body: str | None = None,
        timing: StreamTiming | None = None,
        prior_text: Sequence[str] = (),
        prior_extra_tokens: int = 0,
    ) -> Estimate:
        model = model or parsed.model
        enc = self._encoder(model)
        exact = encoding_for(model)[1]
        counted = self.count_output(parsed, model, prior_text)
        extras = parsed.output_extra_tokens + prior_extra_tokens
        stats = self._stats(model, create=False)
        hidden_reasoning = self._hidden_reasoning(parsed, model, stats)
        counted, extras = self._request_adjusted(
            enc, request_body, counted, extras, parsed, end_rule=not hidden_reasoning
        )
        calibrate = self.cfg.calibrate and stats is not None
        source = TOKENS_ESTIMATED_TIKTOKEN if enc is not None else TOKENS_ESTIMATED_HEURISTIC

        input_tokens: int | None = None
        media = 0
        found = self._render_input(request_body, model)
        if found is not None:
            texts, fixed, media = found
            in_ratio = stats.input_ratio() if calibrate and not exact and stats else None
            input_tokens = max(0, (round(texts * in_ratio) if in_ratio else texts) + fixed)

        ratio: float | None = None
        if hidden_reasoning:
            visible = counted + extras
            if visible and exact:
                visible += REASONING_ANSWER_TOKENS
            hidden = 0
            lower_bound = True
            if timing is not None:
                learned = stats.hidden_rate() if stats is not None else None
                hidden = round((learned or DEFAULT_HIDDEN_RATE) * timing.hidden_secs)
                lower_bound = learned is None or not timing.exact
                source = TOKENS_ESTIMATED_TIMING
            output = visible + hidden
            reasoning: int | None = hidden
        else:
            if calibrate and not exact and stats is not None and stats.helps():
                ratio = stats.ratio()
            scaled = round(counted * ratio) if ratio is not None else counted
            output = scaled + extras
            if ratio is not None:
                source = TOKENS_ESTIMATED_CALIBRATED
            # Anthropic thinking is billed whole but shown summarised: a lower bound.
            lower_bound = parsed.reasoning_model_hint
            reasoning = None if parsed.reasoning_model_hint else 0
        # Stopped by the output limit: the model generated exactly the limit (hidden included).
        hints = output_hints(self._load_request(request_body)) if request_body else None
        if (
            hints is not None
            and hints.max_output is not None
            and parsed.finish_reason in LENGTH_REASONS
            and output < hints.max_output
        ):
            if reasoning is not None:
                reasoning = reasoning + hints.max_output - output
            output = hints.max_output
            lower_bound = False
        self._estimates[source] = self._estimates.get(source, 0) + 1
        return Estimate(
            input_tokens=input_tokens,
            output_tokens=output,
            reasoning_tokens=reasoning,
            token_source=source,
            calibration_ratio=round(ratio, 4) if ratio is not None else None,
            lower_bound=lower_bound,
            input_media_uncounted=media,
        )

    def _request_adjusted(
        self,
        enc: Encoder | None,
        request_body: str | None,
        counted: int,
        extras: int,
        parsed: ParsedBody,
        *,
        end_rule: bool = True,
    ) -> tuple[int, int]:
        """(counted, extras) corrected by what the request says: a tool call forced by
        `tool_choice` bills neither its name nor its framing (Anthropic: `any` and `tool`
        prefill part of the call's markup); the end token the parser marks on a text answer is
        billed or not depending on the request (`end_tokens`; reasoning models always bill it,
        inside their answer's framing)."""
        hints = output_hints(self._load_request(request_body)) if request_body else None
        if parsed.provider == "anthropic":
            # a message with a tool call bills more than any prefill; one without, 3 tokens
            if hints and hints.prefill and extras > ANTHROPIC_TOOL_PREFILL_TOKENS:
                forced = hints.prefill == "tool"
                extras -= ANTHROPIC_TOOL_PREFILL_TOKENS if forced else ANTHROPIC_ANY_PREFILL_TOKENS
                if forced and hints.forced_tool:
                    counted = max(0, counted - count(enc, hints.forced_tool))
        elif hints and hints.forced_tool and extras >= FORCED_CALL_TOKENS:
            extras -= FORCED_CALL_TOKENS
            counted = max(0, counted - count(enc, hints.forced_tool))
        elif end_rule and extras == END_MARK_TOKENS:
            extras = end_tokens(parsed, hints)
        return counted, extras

    def wants_sample(self, model: str | None) -> bool:
        if not self.cfg.calibrate:
            return False
        stats = self._stats(model, create=True)
        if stats is None:
            return False
        stats.sampled_calls += 1
        if stats.sampled_calls <= WARMUP_SAMPLES:
            return True
        every = max(1, self.cfg.calibration_sample_every)
        return (stats.sampled_calls - WARMUP_SAMPLES) % every == 0

    def observe(
        self,
        parsed: ParsedBody,
        *,
        model: str | None,
        timing: StreamTiming | None = None,
        request_body: str | None = None,
    ) -> None:
        """Learn from a complete stream that reported its usage (and was parsed with text)."""
        usage = parsed.usage
        model = model or parsed.model
        if usage is None or usage.output_tokens <= 0:
            return  # nothing to learn (embeddings, empty replies)
        stats = self._stats(model, create=True)
        if stats is None:
            return
        stats.observed += 1
        reported = usage.output_tokens
        if usage.reasoning_tokens > 0:
            stats.reasoning_seen = True
        if self._hidden_reasoning(parsed, model, stats):
            self._observe_timing(stats, reported, usage.reasoning_tokens, timing)
        else:
            self._observe_ratio(stats, parsed, model, reported, request_body)
        if request_body and not encoding_for(model)[1] and usage.input_tokens > 0:
            found = self._render_input(request_body, model)
            if found is not None and found[0] >= MIN_SAMPLE_TOKENS:
                texts, fixed, _ = found
                stats.input_ape_raw.append(ape(texts + fixed, usage.input_tokens))
                r = stats.input_ratio()
                if r is not None:
                    stats.input_ape_cal.append(ape(texts * r + fixed, usage.input_tokens))
                ratio = (usage.input_tokens - fixed) / texts
                if RATIO_BOUNDS[0] <= ratio <= RATIO_BOUNDS[1]:
                    stats.input_ratios.append(ratio)

    def _observe_ratio(
        self,
        stats: ModelStats,
        parsed: ParsedBody,
        model: str | None,
        reported: int,
        request_body: str | None,
    ) -> None:
        counted = self.count_output(parsed, model)
        counted, extras = self._request_adjusted(
            self._encoder(model), request_body, counted, parsed.output_extra_tokens, parsed
        )
        raw_error = ape(counted + extras, reported)
        stats.ape_raw.append(raw_error)
        if encoding_for(model)[1]:
            return  # tiktoken's own encoding: nothing to scale
        ratio = stats.ratio()
        if ratio is not None:  # held out: measured before this sample is learned
            stats.ape_cal.append(ape(round(counted * ratio) + extras, reported))
            stats.ape_paired.append(raw_error)
        if (
            counted < MIN_SAMPLE_TOKENS
            or parsed.reasoning_model_hint  # summarised thinking: billed whole, shown in part
            or is_degenerate(parsed.output_text)
        ):
            stats.skipped_degenerate += 1
            return
        sample = (reported - extras) / counted
        if RATIO_BOUNDS[0] <= sample <= RATIO_BOUNDS[1]:
            stats.ratios.append(sample)
        else:
            stats.skipped_degenerate += 1

    @staticmethod
    def _observe_timing(
        stats: ModelStats, reported: int, reasoning: int, timing: StreamTiming | None
    ) -> None:
        if timing is None or not timing.exact or timing.first_visible is None:
            return
        hidden_secs = timing.hidden_secs
        if reasoning > 0 and hidden_secs >= MIN_HIDDEN_SECS:
            rate = reasoning / hidden_secs
            learned = stats.hidden_rate()
            if learned is not None:  # held out
                stats.ape_timing.append(ape(learned * hidden_secs, reasoning))
            if rate <= MAX_RATE:
                stats.hidden_rates.append(rate)
        visible_tokens = reported - reasoning
        if visible_tokens > 0 and timing.visible_secs >= MIN_VISIBLE_SECS:
            rate = visible_tokens / timing.visible_secs
            if rate <= MAX_RATE:
                stats.visible_rates.append(rate)

    def metrics(self) -> dict[str, Any]:
        directory = self.cfg.encodings_dir or str(BUNDLED_DIR)
        models: dict[str, Any] = {}
        for key, stats in self._models.items():
            name, exact = encoding_for(key)
            ratio = stats.ratio()
            hidden = stats.hidden_rate()
            models[key] = {
                "encoding": name,
                "encoding_approximate": not exact,
                "samples": len(stats.ratios),
                "samples_total": stats.observed,
                "samples_degenerate": stats.skipped_degenerate,
                "calibrated": self.cfg.calibrate and ratio is not None and stats.helps(),
                "ratio": round(ratio, 4) if ratio is not None else None,
                "mape_uncalibrated_pct": mean(stats.ape_raw),
                "mape_calibrated_pct": mean(stats.ape_cal),
                "input_ratio": round(median(stats.input_ratios), 4) if stats.input_ratios else None,
                "input_mape_uncalibrated_pct": mean(stats.input_ape_raw),
                "input_mape_calibrated_pct": mean(stats.input_ape_cal),
                "reasoning": stats.reasoning_seen,
                "timing_samples": len(stats.hidden_rates),
                "hidden_tokens_per_sec": round(hidden, 1) if hidden is not None else None,
                "visible_tokens_per_sec": round(median(stats.visible_rates), 1)
                if stats.visible_rates
                else None,
                "mape_timing_pct": mean(stats.ape_timing),
            }
        return {
            "encodings_dir": directory,
            "encoders": encoder_states(directory),
            "heuristic_fallbacks": self._heuristic_fallbacks,
            "estimates": dict(self._estimates),
            "models": models,
        }

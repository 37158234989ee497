"""Token estimation for requests whose body carries no usage (cancelled, no include_usage, errors).

This module owns the estimate, its calibration and its metrics. `sidecar.enrich.tokenizer` (the
only module that imports tiktoken) owns the encodings, their offline loading, which encoding a
model uses, and what text of a request is counted.

Counting
    Output tokens are counted over the generated text the client saw (`ParsedBody.output_text`:
    content deltas, tool-call names and arguments, refusals, Responses deltas, Anthropic
    text/thinking/tool-input deltas, Gemini parts), joined into one string. Input tokens are counted
    from the logged request body when there is one. Models outside the OpenAI families are counted
    with o200k_base as an approximation, which the calibration below then corrects. When an
    encoding cannot be loaded, counts fall back to ~4 characters per token (`estimated_heuristic`).

Calibration
    Completed streams that carry usage are sampled (`wants_sample`) and observed (`observe`): per
    model a window of the last `WINDOW` samples keeps the reported output tokens, the reported
    reasoning tokens and the visible-text count, as integers. The ratios are ratios of the window
    sums (long streams weigh more, a sample with no visible text cannot divide by zero). Once a
    model has `MIN_CALIBRATION_SAMPLES` samples, its estimates are scaled by them and say
    `estimated_calibrated`. Each observation first measures the error the estimate would have had
    (uncalibrated, and calibrated with the ratios known before the observation), which `metrics()`
    reports as a mean absolute percentage error.

No text is kept or logged: only counts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.config import Tokens
from sidecar.enrich.tokenizer import (
    BUNDLED_DIR,
    ENCODINGS,
    TOKENS_PER_MESSAGE,
    TOKENS_REPLY_PRIMING,
    Encoder,
    count,
    encoder_states,
    encoding_for,
    get_encoder,
    is_embeddings_request,
    is_reasoning_family,
    normalise_model,
    request_texts,
)
from sidecar.types import (
    TOKENS_ESTIMATED_CALIBRATED,
    TOKENS_ESTIMATED_HEURISTIC,
    TOKENS_ESTIMATED_TIKTOKEN,
    ParsedBody,
)

WARMUP_SAMPLES = 20  # wants_sample: the first N completed streams of a model are all sampled
WINDOW = 100  # calibration window per model (last N samples)
MIN_CALIBRATION_SAMPLES = 5  # samples a model needs before its estimates are calibrated
MAX_MODELS = 1000  # models tracked for calibration; beyond, new models are not calibrated


@dataclass(slots=True)
class Estimate:
    input_tokens: int | None  # from request_body when given, else None
    output_tokens: int  # includes the reasoning estimate when calibrated
    reasoning_tokens: int
    token_source: str  # TOKENS_ESTIMATED_TIKTOKEN | _CALIBRATED | _HEURISTIC
    calibration_ratio: float | None
    lower_bound: bool  # reasoning model without calibration: hidden reasoning not counted


# --- calibration state ------------------------------------------------------------------------


class _ModelStats:
    __slots__ = (
        "ape_cal",
        "ape_paired",
        "ape_uncal",
        "observed",
        "reasoning_seen",
        "sampled_calls",
        "sum_reasoning",
        "sum_reported",
        "sum_visible",
        "window",
    )

    def __init__(self) -> None:
        # (visible, reported output, reported reasoning) per sample, ints
        self.window: deque[tuple[int, int, int]] = deque(maxlen=WINDOW)
        self.sum_visible = 0
        self.sum_reported = 0
        self.sum_reasoning = 0
        self.observed = 0  # lifetime samples
        self.sampled_calls = 0  # wants_sample calls
        self.reasoning_seen = False
        self.ape_uncal: deque[float] = deque(maxlen=WINDOW)  # absolute percentage errors
        self.ape_cal: deque[float] = deque(maxlen=WINDOW)
        # the uncalibrated error on the same samples as ape_cal, for a fair comparison
        self.ape_paired: deque[float] = deque(maxlen=WINDOW)

    def calibrated(self) -> bool:
        return len(self.window) >= MIN_CALIBRATION_SAMPLES and self.sum_visible > 0

    def calibration_helps(self) -> bool:
        """Calibration is kept only while it beats the raw count on the same streams (a model
        whose hidden reasoning varies wildly can make a fixed ratio worse than no ratio)."""
        if len(self.ape_cal) < MIN_CALIBRATION_SAMPLES:
            return True
        return sum(self.ape_cal) <= sum(self.ape_paired)

    def add(self, visible: int, reported: int, reasoning: int) -> None:
        if len(self.window) == self.window.maxlen:
            v, r, rr = self.window[0]
            self.sum_visible -= v
            self.sum_reported -= r
            self.sum_reasoning -= rr
        self.window.append((visible, reported, reasoning))
        self.sum_visible += visible
        self.sum_reported += reported
        self.sum_reasoning += reasoning
        self.observed += 1
        self.reasoning_seen = self.reasoning_seen or reasoning > 0

    def scale(self, visible: int, total: int) -> int:
        """round(visible * total / sum_visible), half up, in integers."""
        return (2 * visible * total + self.sum_visible) // (2 * self.sum_visible)


def _mean(values: deque[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


# --- the estimator ----------------------------------------------------------------------------


class TokenEstimator:
    def __init__(self, cfg: Tokens) -> None:
        self.cfg = cfg
        self._models: dict[str, _ModelStats] = {}
        self._heuristic_fallbacks = 0  # counts made with the character heuristic
        self._estimates: dict[str, int] = {}  # token_source -> estimates made

    # counting

    def _encoder(self, model: str | None) -> Encoder | None:
        return get_encoder(encoding_for(model)[0], self.cfg.encodings_dir)

    def _count(self, enc: Encoder | None, text: str) -> int:
        if enc is None and text:
            self._heuristic_fallbacks += 1
        return count(enc, text)

    def count_output(self, parsed: ParsedBody, model: str | None) -> int:
        """Tokens of the visible generated text, uncalibrated."""
        return self._count(self._encoder(model), "".join(parsed.output_text))

    def count_input(self, request_body: str | None, model: str | None) -> int | None:
        """Approximate input tokens of a logged JSON request; None when it cannot be read."""
        if not request_body:
            return None
        try:
            body = orjson.loads(request_body)
        except orjson.JSONDecodeError:
            return None
        found = request_texts(body)
        if found is None:
            return None
        messages, token_ids = found
        enc = self._encoder(model or (body.get("model") if isinstance(body, dict) else None))
        total = token_ids
        for texts in messages:
            total += self._count(enc, "".join(texts))
        if messages and not is_embeddings_request(body):
            total += TOKENS_PER_MESSAGE * len(messages) + TOKENS_REPLY_PRIMING
        return total

    def _stats(self, model: str | None, create: bool) -> _ModelStats | None:
        key = normalise_model(model)
        if not key:
            return None
        stats = self._models.get(key)
        if stats is None and create and len(self._models) < MAX_MODELS:
            stats = self._models[key] = _ModelStats()
        return stats

    # public API

    def warm_up(self) -> None:
        """Load both encodings now (about 1 s, blocking) rather than at the first estimate."""
        for name in ENCODINGS:
            get_encoder(name, self.cfg.encodings_dir)

    def estimate(
        self, parsed: ParsedBody, *, model: str | None, request_body: str | None = None
    ) -> Estimate:
        model = model or parsed.model
        enc = self._encoder(model)
        visible = self.count_output(parsed, model)
        input_tokens = self.count_input(request_body, model)
        stats = self._stats(model, create=False)
        reasoning = (
            parsed.reasoning_model_hint
            or is_reasoning_family(model)
            or (stats is not None and stats.reasoning_seen)
        )
        if (
            self.cfg.calibrate
            and stats is not None
            and stats.calibrated()
            and stats.calibration_helps()
        ):
            output = stats.scale(visible, stats.sum_reported)
            hidden = stats.scale(visible, stats.sum_reasoning)
            est = Estimate(
                input_tokens=input_tokens,
                output_tokens=output,
                reasoning_tokens=min(hidden, output),
                token_source=TOKENS_ESTIMATED_CALIBRATED,
                calibration_ratio=round(stats.sum_reported / stats.sum_visible, 4),
                # nothing visible to scale: the hidden reasoning of this stream is not counted
                lower_bound=reasoning and visible == 0,
            )
        else:
            est = Estimate(
                input_tokens=input_tokens,
                output_tokens=visible,
                reasoning_tokens=0,
                token_source=TOKENS_ESTIMATED_TIKTOKEN if enc else TOKENS_ESTIMATED_HEURISTIC,
                calibration_ratio=None,
                lower_bound=reasoning,
            )
        self._estimates[est.token_source] = self._estimates.get(est.token_source, 0) + 1
        return est

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

    def observe(self, parsed: ParsedBody, *, model: str | None) -> None:
        usage = parsed.usage
        model = model or parsed.model
        if usage is None or usage.output_tokens <= 0:
            return  # nothing to learn (embeddings, empty replies)
        stats = self._stats(model, create=True)
        if stats is None:
            return
        visible = self.count_output(parsed, model)
        reported = usage.output_tokens
        # The error each method would have made on this stream, before learning from it.
        raw_error = abs(visible - reported) * 100 / reported
        stats.ape_uncal.append(raw_error)
        if stats.calibrated():
            predicted = stats.scale(visible, stats.sum_reported)
            stats.ape_cal.append(abs(predicted - reported) * 100 / reported)
            stats.ape_paired.append(raw_error)
        stats.add(visible, reported, min(usage.reasoning_tokens, reported))

    def metrics(self) -> dict[str, Any]:
        directory = self.cfg.encodings_dir or str(BUNDLED_DIR)
        encoders = encoder_states(directory)
        models: dict[str, Any] = {}
        for key, stats in self._models.items():
            name, exact = encoding_for(key)
            sv = stats.sum_visible
            models[key] = {
                "encoding": name,
                "encoding_approximate": not exact,
                "samples": len(stats.window),
                "samples_total": stats.observed,
                "calibrated": self.cfg.calibrate
                and stats.calibrated()
                and stats.calibration_helps(),
                "ratio": round(stats.sum_reported / sv, 4) if sv else None,
                "reasoning_ratio": round(stats.sum_reasoning / sv, 4) if sv else None,
                "mape_uncalibrated_pct": _mean(stats.ape_uncal),
                "mape_calibrated_pct": _mean(stats.ape_cal),
            }
        return {
            "encodings_dir": directory,
            "encoders": encoders,
            "heuristic_fallbacks": self._heuristic_fallbacks,
            "estimates": dict(self._estimates),
            "models": models,
        }

"""Per-model calibration state of the token estimator: robust ratios and timing rates.

For tokenizers that are not tiktoken's, per model the ratio (reported - overheads) / counted of
the last `WINDOW` samples, skipping degenerate ones; its median is used. For reasoning models,
the hidden and visible token rates of the last `TIMING_WINDOW` samples; their medians are used.
Every sample is scored before it is learned (held-out errors), so the estimator can tell whether
the calibration beats the raw count. Only integers and floats are kept, never text.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from statistics import median

WINDOW = 100  # calibration window per model (last N samples)
MIN_CALIBRATION_SAMPLES = 5  # samples a model needs before its estimates are calibrated
MIN_SAMPLE_TOKENS = 8  # a sample with fewer counted tokens says little about a ratio
RATIO_BOUNDS = (0.25, 4.0)  # ratios outside are degenerate samples, not calibration
MIN_NON_SPACE = 0.25  # a text with fewer non-whitespace characters is degenerate
TIMING_WINDOW = 50
MIN_TIMING_SAMPLES = 3


class ModelStats:
    __slots__ = (
        "ape_cal",
        "ape_paired",
        "ape_raw",
        "ape_timing",
        "hidden_rates",
        "input_ape_cal",
        "input_ape_raw",
        "input_ratios",
        "observed",
        "ratios",
        "reasoning_seen",
        "sampled_calls",
        "skipped_degenerate",
        "visible_rates",
    )

    def __init__(self) -> None:
        self.ratios: deque[float] = deque(maxlen=WINDOW)
        self.input_ratios: deque[float] = deque(maxlen=WINDOW)
        self.hidden_rates: deque[float] = deque(maxlen=TIMING_WINDOW)
        self.visible_rates: deque[float] = deque(maxlen=TIMING_WINDOW)
        self.observed = 0
        self.sampled_calls = 0
        self.skipped_degenerate = 0
        self.reasoning_seen = False
        # Held-out absolute percentage errors (measured before learning from the sample)
        self.ape_raw: deque[float] = deque(maxlen=WINDOW)
        self.ape_cal: deque[float] = deque(maxlen=WINDOW)
        self.ape_paired: deque[float] = deque(maxlen=WINDOW)  # raw, on the same samples
        self.ape_timing: deque[float] = deque(maxlen=TIMING_WINDOW)
        self.input_ape_raw: deque[float] = deque(maxlen=WINDOW)
        self.input_ape_cal: deque[float] = deque(maxlen=WINDOW)

    def ratio(self) -> float | None:
        if len(self.ratios) < MIN_CALIBRATION_SAMPLES:
            return None
        return median(self.ratios)

    def helps(self) -> bool:
        """Calibration is kept only while it beats the raw count on held-out samples."""
        if len(self.ape_cal) < MIN_CALIBRATION_SAMPLES:
            return True
        return sum(self.ape_cal) <= sum(self.ape_paired)

    def input_ratio(self) -> float | None:
        if len(self.input_ratios) < MIN_CALIBRATION_SAMPLES:
            return None
        if len(self.input_ape_cal) >= MIN_CALIBRATION_SAMPLES and sum(self.input_ape_cal) > sum(
            list(self.input_ape_raw)[-len(self.input_ape_cal) :]
        ):
            return None
        return median(self.input_ratios)

    def hidden_rate(self) -> float | None:
        if len(self.hidden_rates) < MIN_TIMING_SAMPLES:
            return None
        return median(self.hidden_rates)


def ape(estimate: float, truth: int) -> float:
    return abs(estimate - truth) * 100 / truth


def mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def is_degenerate(texts: Sequence[str]) -> bool:
    """Mostly whitespace (a model stuck emitting newlines): no evidence for a ratio."""
    text = "".join(texts)  # one-character counts add up across the pieces: counted once
    size = len(text)
    if not size:
        return True
    blank = text.count(" ") + text.count("\n") + text.count("\r") + text.count("\t")
    return size - blank < MIN_NON_SPACE * size

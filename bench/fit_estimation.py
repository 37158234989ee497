"""Derive the token-estimation constants from the FIT half of the pool alone (a tool, not a test).

Every FIT stream (`bench/estimation_pool.py`; the same model, request and answer count once) is
estimated exactly as the sidecar estimates a stream without usage, Anthropic calibrated on the
FIT half as in `bench/bench_estimation.py`. Each rule below knows how many times it applies to
a stream (its multiplicity: the stream's tool calls, the request's messages, ...), and the
estimates are linear in the constants, so the estimate with other constants is

    estimate(c) = estimate(code) + sum over rules k of sign_k * (c_k - code_k) * multiplicity_k

(sign -1 for a constant the code subtracts). The fitted constants are the integers that
minimise the sum of absolute token errors over the FIT streams (a median fit, robust to odd
streams), found by coordinate descent: each constant in turn is moved to the best integer given
the others, until none moves. `--start zero` starts every constant at 0 instead of the code's
value, to show the fit finds them without being told. The calibration ratios are the ones
learned with the code's constants (held fixed during the fit).

Printed per rule: the code's constant, the fitted one, the FIT streams it applies to, and the
value each stream alone implies (the others at their fitted values): median and range on FIT,
and median on HELD-OUT, as a check only (HELD-OUT is never used to fit). A rule with no FIT
stream cannot be learned here; the table says where its value comes from.

    .venv/bin/python bench/fit_estimation.py [--start code|zero] [--rule SUBSTRING] [--verbose]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson
from estimation_pool import FIT, HELD_OUT, Case, calibrated, load_cases

from sidecar.enrich import input_tokens as it
from sidecar.enrich import output_rules as orules
from sidecar.enrich import tokens as tk
from sidecar.enrich.tokenizer import encoding_for
from sidecar.enrich.tokens import TokenEstimator
from sidecar.parse.providers import _common as pc


def _events(text: str) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE stream."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("data:") and not line[5:].strip().startswith("[DONE]"):
            try:
                obj = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


@dataclass
class Stream:
    """One distinct stream: its residuals at the code's constants and what the rules need."""

    case: Case
    output_error: float | None = None  # reported - estimated (a reasoning model: visible part)
    input_error: float | None = None
    mult: dict[tuple[int, str], int] = field(default_factory=dict)  # (rule, side) -> how often

    @cached_property
    def request(self) -> dict[str, Any]:
        body = orjson.loads(self.case.request) if self.case.request else None
        return body if isinstance(body, dict) else {}

    @property
    def model(self) -> str:
        return self.case.full.model or ""

    @property
    def openai(self) -> bool:
        """An OpenAI / Azure chat stream counted with the model's own tokenizer."""
        full = self.case.full
        chat = full.provider in ("openai", "azure") and full.api == "chat.completions"
        return chat and encoding_for(full.model)[1]

    @property
    def reasoning(self) -> bool:
        return self.case.group == "openai reasoning"

    @property
    def claude(self) -> bool:
        """An Anthropic answer the output rules can be read off (not summarised thinking)."""
        return self.case.group == "anthropic"

    @property
    def harmony(self) -> bool:
        return it._is_harmony(self.model)

    # --- the answer -------------------------------------------------------------------------

    @cached_property
    def chat(self) -> tuple[list[int], bool, str | None]:
        """OpenAI chat: tool calls per choice, whether text was streamed, the finish reason."""
        calls: dict[Any, set[Any]] = {}
        text = False
        finish = None
        for obj in _events(self.case.text):
            for choice in obj.get("choices") or ():
                delta = choice.get("delta") or {}
                text = text or bool(delta.get("content") or delta.get("refusal"))
                for call in delta.get("tool_calls") or ():
                    calls.setdefault(choice.get("index"), set()).add(call.get("index"))
                finish = choice.get("finish_reason") or finish
        return [len(v) for v in calls.values()], text, finish

    @property
    def forced_call(self) -> bool:
        """A call that ends with `stop`: the parser bills its arguments only."""
        calls, text, finish = self.chat
        return bool(calls) and not text and finish == "stop"

    def end_kind(self) -> str | None:
        """Which end-token rule a text answer ending in `stop` falls under."""
        calls, text, finish = self.chat
        if self.reasoning or not text or calls or finish != "stop" or not self.request:
            return None
        hints = orules.output_hints(self.request)
        if hints.structured:
            return "structured"
        if hints.schema_with_tools:
            return "schema+tools"
        azure = self.case.full.provider == "azure"
        return "billed" if hints.tools_offered or azure else "plain"

    @cached_property
    def claude_calls(self) -> list[int]:
        """Anthropic: the top-level parameters of each tool_use block of the answer."""
        raw: dict[Any, str] = {}
        for obj in _events(self.case.text):
            block = obj.get("content_block") or {}
            if obj.get("type") == "content_block_start" and block.get("type") == "tool_use":
                raw[obj.get("index")] = ""
            elif obj.get("type") == "content_block_delta" and obj.get("index") in raw:
                raw[obj["index"]] += (obj.get("delta") or {}).get("partial_json") or ""
        return [len(orjson.loads(r or "{}")) for r in raw.values()]

    @property
    def claude_mode(self) -> str:
        choice = self.request.get("tool_choice")
        return choice.get("type", "auto") if isinstance(choice, dict) else "auto"

    # --- the request ------------------------------------------------------------------------

    @property
    def messages(self) -> list[Any]:
        value = self.request.get("messages")
        return value if isinstance(value, list) else []

    @property
    def history_calls(self) -> list[int]:
        """Chat: the tool calls of each assistant message of the history."""
        return [
            len(m["tool_calls"])
            for m in self.messages
            if isinstance(m, dict) and isinstance(m.get("tool_calls"), list) and m["tool_calls"]
        ]

    @property
    def tools(self) -> int:
        return len(self.request.get("tools") or ())

    @property
    def schema(self) -> bool:
        req = self.request
        fmt = req.get("response_format") or (req.get("text") or {}).get("format")
        return isinstance(fmt, dict) and fmt.get("type") == "json_schema"

    @property
    def forced_choice(self) -> bool:
        choice = self.request.get("tool_choice")
        return choice == "required" or isinstance(choice, dict)

    @property
    def openai_input(self) -> bool:
        return self.openai and self.input_error is not None

    @property
    def claude_input(self) -> bool:
        return self.case.full.provider == "anthropic" and self.input_error is not None

    def claude_blocks(self, kind: str) -> list[dict[str, Any]]:
        """Anthropic request: per message, how many content blocks of `kind`."""
        out = []
        for msg in self.messages:
            content = msg.get("content") if isinstance(msg, dict) else None
            blocks = content if isinstance(content, list) else []
            out.append([b for b in blocks if isinstance(b, dict) and b.get("type") == kind])
        return out

    @property
    def claude_45(self) -> bool:
        name = self.model.lower()
        return "4-5" in name or "4.5" in name

    def claude_tools(self, gen45: bool, forced: bool) -> int:
        ok = self.claude_input and self.tools > 0 and self.claude_45 == gen45
        return int(ok and (self.claude_mode in ("any", "tool")) == forced)


@dataclass
class Rule:
    label: str
    module: Any  # where the constant lives; None: a rule the code bills nothing for
    constant: str
    side: str  # "output" or "input"
    multiplicity: Callable[[Stream], int]
    sign: int = 1
    source: str = ""  # where the value comes from when no FIT stream has the rule
    also: Callable[[Stream], int] | None = None  # multiplicity on the input side as well

    def sides(self) -> tuple[tuple[str, Callable[[Stream], int]], ...]:
        if self.also is None:
            return ((self.side, self.multiplicity),)
        return ((self.side, self.multiplicity), ("input", self.also))

    @property
    def code(self) -> int:
        return getattr(self.module, self.constant) if self.module is not None else 0

    @property
    def calibrated(self) -> bool:
        """An Anthropic rule: fitted with the calibration ratios learned with the code's
        constants, which move a little when the constants move."""
        return "ANTHROPIC" in self.constant

    @property
    def name(self) -> str:
        if self.module is None:
            return self.constant
        return f"{self.module.__name__.rsplit('.', 1)[-1]}.{self.constant}"


def _calls(s: Stream) -> int:
    return sum(s.chat[0]) if s.openai and not s.forced_call else 0


def _prefilled(mode: str) -> Callable[[Stream], int]:
    return lambda s: int(s.claude and bool(s.claude_calls) and s.claude_mode == mode)


def _end(kind: str) -> Callable[[Stream], int]:
    return lambda s: int(s.openai and s.end_kind() == kind)


RULES = [
    # --- output: OpenAI chat (exact tokenizer) ------------------------------------------------
    Rule("tool call: framing", pc, "TOOL_CALL_TOKENS", "output", _calls),
    Rule(
        "parallel calls: wrapper",
        pc,
        "PARALLEL_TOOL_CALLS_TOKENS",
        "output",
        lambda s: sum(1 for n in s.chat[0] if n >= 2) if s.openai and not s.forced_call else 0,
    ),
    Rule(
        "call forced by tool_choice: framing",
        None,
        "(none billed)",
        "output",
        lambda s: int(s.openai and s.forced_call),
    ),
    Rule(
        "end token: tools on offer or Azure", orules, "BILLED_END_TOKENS", "output", _end("billed")
    ),
    Rule("end token: plain OpenAI request", None, "(none billed)", "output", _end("plain")),
    Rule("end token: structured, no tools", None, "(none billed)", "output", _end("structured")),
    Rule(
        "end: json_schema answer, tools offered",
        orules,
        "STRUCTURED_WITH_TOOLS_TOKENS",
        "output",
        _end("schema+tools"),
        source="one test scenario, in HELD-OUT",
    ),
    Rule(
        "reasoning model: answer channel",
        tk,
        "REASONING_ANSWER_TOKENS",
        "output",
        lambda s: int(s.reasoning and s.openai and bool(s.case.full.output_text)),
    ),
    # --- output: Anthropic (calibrated) -------------------------------------------------------
    Rule("Claude: message", pc, "ANTHROPIC_MESSAGE_TOKENS", "output", lambda s: int(s.claude)),
    # these two apply to the history's calls as well (input_tokens.ANTHROPIC_HISTORY_*: equal)
    Rule(
        "Claude: a message's first tool call",
        pc,
        "ANTHROPIC_TOOL_USE_TOKENS",
        "output",
        lambda s: int(s.claude and bool(s.claude_calls)),
        also=lambda s: sum(1 for b in s.claude_blocks("tool_use") if b) if s.claude_input else 0,
    ),
    Rule(
        "Claude: further tool call",
        pc,
        "ANTHROPIC_NEXT_TOOL_USE_TOKENS",
        "output",
        lambda s: max(0, len(s.claude_calls) - 1) if s.claude else 0,
    ),
    Rule(
        "Claude: tool call parameter",
        pc,
        "ANTHROPIC_TOOL_PARAM_TOKENS",
        "output",
        lambda s: sum(s.claude_calls) if s.claude else 0,
        also=lambda s: (
            sum(len(b.get("input") or {}) for m in s.claude_blocks("tool_use") for b in m)
            if s.claude_input
            else 0
        ),
    ),
    *(
        Rule(f"Claude: tool_choice {mode} prefill", orules, name, "output", _prefilled(mode), -1)
        for mode, name in (
            ("any", "ANTHROPIC_ANY_PREFILL_TOKENS"),
            ("tool", "ANTHROPIC_TOOL_PREFILL_TOKENS"),
        )
    ),
    Rule(
        "Gemini: function call",
        pc,
        "GEMINI_FUNCTION_CALL_TOKENS",
        "output",
        lambda s: 0,
        source="no recorded call: chat figure",
    ),
    # --- input: OpenAI (exact tokenizer) ------------------------------------------------------
    Rule(
        "chat message",
        it,
        "TOKENS_PER_MESSAGE",
        "input",
        lambda s: len(s.messages) if s.openai_input else 0,
    ),
    Rule("reply priming", it, "TOKENS_REPLY_PRIMING", "input", lambda s: int(s.openai_input)),
    Rule(
        "message name",
        it,
        "TOKENS_PER_NAME",
        "input",
        lambda s: (
            sum(1 for m in s.messages if isinstance(m, dict) and "name" in m)
            if s.openai_input
            else 0
        ),
        source="OpenAI cookbook",
    ),
    Rule(
        "tool definition (beyond its rendering)",
        it,
        "TOOL_DEFINITION_TOKENS",
        "input",
        lambda s: s.tools if s.openai_input else 0,
    ),
    Rule(
        "tool_choice required or named",
        it,
        "FORCED_TOOL_CHOICE_TOKENS",
        "input",
        lambda s: int(s.openai_input and s.tools > 0 and s.forced_choice),
    ),
    Rule(
        "json_schema response format",
        it,
        "RESPONSE_FORMAT_TOKENS",
        "input",
        lambda s: int(s.openai_input and s.schema),
    ),
    Rule(
        "json_schema with tools",
        it,
        "RESPONSE_FORMAT_WITH_TOOLS_TOKENS",
        "input",
        lambda s: int(s.openai_input and s.schema and s.tools > 0),
    ),
    Rule(
        "history tool call",
        it,
        "HISTORY_TOOL_CALL_TOKENS",
        "input",
        lambda s: sum(s.history_calls) if s.openai_input else 0,
    ),
    Rule(
        "history parallel calls",
        it,
        "HISTORY_PARALLEL_TOKENS",
        "input",
        lambda s: sum(1 for n in s.history_calls if n >= 2) if s.openai_input else 0,
    ),
    Rule(
        "reasoning model: priming",
        it,
        "HARMONY_MESSAGE_TOKENS",
        "input",
        lambda s: int(s.openai_input and s.harmony),
    ),
    Rule(
        "reasoning model: tools preamble",
        it,
        "HARMONY_TOOLS_EXTRA_TOKENS",
        "input",
        lambda s: int(s.openai_input and s.harmony and s.tools > 0),
    ),
    Rule(
        "reasoning model: history call turn",
        it,
        "HARMONY_HISTORY_CALL_TOKENS",
        "input",
        lambda s: len(s.history_calls) if s.openai_input and s.harmony else 0,
    ),
    # --- input: Anthropic (calibrated) --------------------------------------------------------
    Rule(
        "Claude: message",
        it,
        "ANTHROPIC_INPUT_MESSAGE_TOKENS",
        "input",
        lambda s: len(s.messages) if s.claude_input else 0,
    ),
    Rule(
        "Claude 4: tool prompt, auto",
        it,
        "ANTHROPIC_TOOLS_AUTO_TOKENS",
        "input",
        lambda s: s.claude_tools(gen45=False, forced=False),
    ),
    Rule(
        "Claude 4: tool prompt, any/tool",
        it,
        "ANTHROPIC_TOOLS_ANY_TOKENS",
        "input",
        lambda s: s.claude_tools(gen45=False, forced=True),
    ),
    Rule(
        "Claude 4.5: tool prompt, auto",
        it,
        "ANTHROPIC_45_TOOLS_AUTO_TOKENS",
        "input",
        lambda s: s.claude_tools(gen45=True, forced=False),
    ),
    Rule(
        "Claude 4.5: tool prompt, any/tool",
        it,
        "ANTHROPIC_45_TOOLS_ANY_TOKENS",
        "input",
        lambda s: s.claude_tools(gen45=True, forced=True),
    ),
    Rule(
        "Claude: history, further call",
        it,
        "ANTHROPIC_HISTORY_NEXT_TOOL_USE_TOKENS",
        "input",
        lambda s: (
            sum(max(0, len(b) - 1) for b in s.claude_blocks("tool_use")) if s.claude_input else 0
        ),
    ),
    Rule(
        "Claude: tool result",
        it,
        "ANTHROPIC_TOOL_RESULT_TOKENS",
        "input",
        lambda s: sum(len(b) for b in s.claude_blocks("tool_result")) if s.claude_input else 0,
    ),
    Rule(
        "Claude: output_format preamble",
        it,
        "ANTHROPIC_OUTPUT_FORMAT_TOKENS",
        "input",
        lambda s: int(s.claude_input and "output_format" in s.request),
    ),
    Rule(
        "Claude: thinking preamble",
        it,
        "ANTHROPIC_THINKING_TOKENS",
        "input",
        lambda s: int(s.claude_input and isinstance(s.request.get("thinking"), dict)),
    ),
]


def streams(cases: Iterable[Case], est: TokenEstimator, dedupe: bool = True) -> list[Stream]:
    """One Stream per distinct stream (same half, model, request and answer: counted once,
    unless not `dedupe`); `multiplicities` fills in which rules apply."""
    out = []
    seen = set()
    for c in cases:
        cut = c.cut()
        key = repr((c.half, c.full.model, c.request, cut.output_text, c.full.usage))
        if key in seen and dedupe:
            continue
        seen.add(key)
        e = est.estimate(cut, model=cut.model or c.full.model, request_body=c.request)
        truth = c.full.usage
        assert truth is not None
        s = Stream(c)
        if s.reasoning and s.openai:  # without chunk times only the visible part is known
            visible = truth.output_tokens - truth.reasoning_tokens
            s.output_error = visible - (e.output_tokens - (e.reasoning_tokens or 0))
        elif s.openai or s.claude:
            s.output_error = truth.output_tokens - e.output_tokens
        if e.input_tokens is not None and truth.input_tokens:
            s.input_error = truth.input_tokens - e.input_tokens
        out.append(s)
    return out


def multiplicities(group: list[Stream], rules: list[Rule]) -> None:
    for s in group:
        s.mult = {
            (i, side): n
            for i, rule in enumerate(rules)
            for side, multiplicity in rule.sides()
            if (n := multiplicity(s))
        }


def error(s: Stream, side: str, values: list[float], rules: list[Rule]) -> float | None:
    """reported - estimated for one side of one stream with the constants `values`."""
    base = s.output_error if side == "output" else s.input_error
    if base is None:
        return None
    shift = sum(
        rules[i].sign * (values[i] - rules[i].code) * n
        for (i, sd), n in s.mult.items()
        if sd == side
    )
    return base - shift


HUBER = 1.0  # tokens: errors beyond count linearly (a median fit), below quadratically
# An Anthropic constant moves the calibration ratio it is used with (a median of samples that
# subtract it), which moves the fit back: within this many tokens of the fit it is consistent.
CALIBRATED_SLACK = 1.0
SIDES = ("output", "input")


def _huber_fit(fit_streams: list[Stream], values: list[float], rules: list[Rule]) -> list[float]:
    """Continuous constants minimising the sum of Huber losses of the errors (convex, so the
    result does not depend on where it starts), by exact coordinate minimisation."""
    residual = {(id(s), side): error(s, side, values, rules) for s in fit_streams for side in SIDES}
    cells = [
        [
            (key, rules[i].sign * n)
            for s in fit_streams
            for side in SIDES
            if (n := s.mult.get((i, side))) and residual[key := (id(s), side)] is not None
        ]
        for i in range(len(rules))
    ]
    for _ in range(2000):
        biggest = 0.0
        for i, cell in enumerate(cells):
            if not cell:
                continue

            def slope(d: float, cell: list = cell) -> float:
                return sum(a * max(-HUBER, min(HUBER, residual[k] - a * d)) for k, a in cell)

            lo, hi = -4096.0, 4096.0
            for _ in range(50):  # the slope falls as d grows: bisect for its zero
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if slope(mid) > 0 else (lo, mid)
            d = (lo + hi) / 2
            values[i] += d
            for k, a in cell:
                residual[k] -= a * d
            biggest = max(biggest, abs(d))
        if biggest < 1e-3:
            return values
    raise SystemExit("the fit did not settle")


def fit(fit_streams: list[Stream], rules: list[Rule]) -> tuple[list[int], list[float]]:
    """The constants that best explain the FIT streams: the Huber optimum from zero, rounded to
    integers. Rules no FIT stream has keep the code's value."""
    known = {i for s in fit_streams for i, _ in s.mult}
    start = [0.0 if i in known else float(rule.code) for i, rule in enumerate(rules)]
    smooth = _huber_fit(fit_streams, start, rules)
    return [round(v) for v in smooth], smooth


def implied_values(
    i: int, group: list[Stream], values: list[float], rules: list[Rule]
) -> list[float]:
    """The value of constant i each stream alone implies, the others at `values`."""
    rule = rules[i]
    out = []
    for s in group:
        for side in SIDES:
            n = s.mult.get((i, side))
            e = error(s, side, values, rules) if n else None
            if n and e is not None:
                out.append(values[i] + rule.sign * e / n)
    return out


def unlearned(cases: list[Case], est: TokenEstimator) -> set[str]:
    """The names of the HELD-OUT streams that some rule applies to which no FIT stream has:
    their figures test a constant that was not learned from the FIT half."""
    everything = streams(cases, est, dedupe=False)
    multiplicities(everything, RULES)
    known = {i for s in everything if s.case.half == FIT for i, _ in s.mult}
    return {
        s.case.name
        for s in everything
        if s.case.half == HELD_OUT and any(i not in known for i, _ in s.mult)
    }


def run(only: str | None, verbose: bool) -> int:
    cases = load_cases()
    est = calibrated(c for c in cases if c.half == FIT)  # calibration never sees HELD-OUT
    everything = streams(cases, est)
    multiplicities(everything, RULES)
    fit_streams = [s for s in everything if s.case.half == FIT]
    held = [s for s in everything if s.case.half == HELD_OUT]
    fitted, smooth = fit(fit_streams, RULES)
    print(
        f"{'rule':38} {'constant':44} {'code':>5} {'fitted':>6} {'(smooth)':>8} {'n':>3}"
        f" {'FIT values':>17}  {'HELD-OUT (check)':>16}"
    )
    differ = 0
    for i, rule in enumerate(RULES):
        if only and only.lower() not in (rule.label + rule.constant).lower():
            continue
        mine = implied_values(i, fit_streams, fitted, RULES)
        check = implied_values(i, held, fitted, RULES)
        check_txt = f"{statistics.median(check):6.1f} n={len(check):<3}" if check else "-"
        if not mine:
            note = rule.source or "no FIT stream"
            print(
                f"{rule.label:38} {rule.name:44} {rule.code:>5} {'-':>6} {'':>8} {0:>3}"
                f" {note:>17}  {check_txt:>16}"
            )
            continue
        spread = f"{statistics.median(mine):.0f} [{min(mine):.0f}..{max(mine):.0f}]"
        mark = ""
        if fitted[i] != rule.code:
            close = rule.calibrated and abs(smooth[i] - rule.code) <= CALIBRATED_SLACK
            mark = "  ~ within the calibration's slack" if close else "  <- differs"
            differ += not close
        print(
            f"{rule.label:38} {rule.name:44} {rule.code:>5} {fitted[i]:>6} {smooth[i]:>8.1f}"
            f" {len(mine):>3} {spread:>17}  {check_txt:>16}{mark}"
        )
        if verbose:
            for s in fit_streams:
                for v in implied_values(i, [s], fitted, RULES):
                    print(f"      {v:8.1f}  {s.case.name} {s.model}")
    print(f"constants that differ from the fit: {differ}")
    return differ


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rule", help="only rules whose label or constant contains this")
    p.add_argument("--verbose", action="store_true", help="print every FIT stream's value")
    args = p.parse_args()
    run(args.rule, args.verbose)


if __name__ == "__main__":
    main()

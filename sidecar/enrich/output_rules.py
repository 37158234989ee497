"""How the request and the stream change what an answer bills beyond its counted text.

Pure (no tokenizer). The parsers mark the overheads they can see in the stream
(`ParsedBody.output_extra_tokens`: tool-call framing, an end token on a text answer); these
rules correct them with what only the request says (a forced tool, structured output, tools on
offer, the output limit). Fitted on the FIT half of the pool's request/usage pairs
(bench/fit_estimation.py); see docs/estimation.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.types import ParsedBody

# The output side (parse/providers/_common.py bills each tool call 7 framing tokens and a text
# answer ending in `stop` 1 end token); what the request changes about them:
# A call forced by tool_choice bills neither its name nor its framing: the parser drops both
# when the call ends with `stop`; for a stream cut before its end the request tells, and the
# parser's TOOL_CALL_TOKENS are taken back.
FORCED_CALL_TOKENS = 7
# Anthropic (parse/providers/_common.py bills a message's first tool_use block its wrapper and
# invoke markup): `tool_choice` any prefills the wrapper, `tool` the wrapper and the invoke
# element with the tool's name; what is prefilled is not billed.
ANTHROPIC_ANY_PREFILL_TOKENS = 16
ANTHROPIC_TOOL_PREFILL_TOKENS = 26
# A text answer ending in `stop` is marked by the parser with END_OF_MESSAGE_TOKENS (1): the
# estimator replaces the mark with what is billed (`end_tokens`):
END_MARK_TOKENS = 1
BILLED_END_TOKENS = 1  # with tools on offer, or on Azure; none otherwise ...
STRUCTURED_WITH_TOOLS_TOKENS = 5  # ... but with tools on offer a json_schema answer bills 5


@dataclass(slots=True)
class OutputHints:
    forced_tool: str | None = None  # tool_choice names this function (OpenAI, Anthropic)
    prefill: str | None = None  # Anthropic tool_choice "any" or "tool": the markup prefilled
    structured: bool = False  # response_format / text.format asks for JSON, no tools
    max_output: int | None = None  # the request's output limit
    tools_offered: bool = False
    schema_with_tools: bool = False  # a json_schema answer with tools on offer


def output_hints(body: Any) -> OutputHints:
    """What a request says about how its answer is billed (pool: gpt-4o / gpt-5-mini)."""
    hints = OutputHints()
    if not isinstance(body, dict):
        return hints
    for key in ("max_completion_tokens", "max_output_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            hints.max_output = value
            break
    gen = body.get("generationConfig")
    if hints.max_output is None and isinstance(gen, dict):
        value = gen.get("maxOutputTokens")
        hints.max_output = value if isinstance(value, int) and value > 0 else None
    hints.tools_offered = bool(body.get("tools"))
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):  # Anthropic
        hints.prefill = str(choice["type"])
        name = choice.get("name") if hints.prefill == "tool" else None
        hints.forced_tool = name if isinstance(name, str) and name else None
    elif isinstance(choice, dict):
        fn = choice.get("function") if isinstance(choice.get("function"), dict) else choice
        name = fn.get("name")
        hints.forced_tool = name if isinstance(name, str) and name else None
    fmt = body.get("response_format")
    text = body.get("text")
    if isinstance(text, dict):
        fmt = fmt or text.get("format")
    # With tools on offer a json_object answer still ends with its end token and a json_schema
    # one bills 5 tokens (pool: gpt-4o, two request shapes).
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        hints.structured = not body.get("tools")
        hints.schema_with_tools = bool(body.get("tools")) and fmt.get("type") == "json_schema"
    return hints


# finish reasons that mean "stopped by the output limit"
LENGTH_REASONS = frozenset({"length", "max_tokens", "max_output_tokens", "MAX_TOKENS"})


def end_tokens(parsed: ParsedBody, hints: OutputHints | None) -> int:
    """The end-of-message tokens an OpenAI text answer bills (pool, gpt-4o family): 1 when
    tools were offered or on Azure, none on a plain OpenAI request and none for structured
    output without tools; a json_schema answer with tools on offer bills 5. Without the
    request: 1 on Azure, else 0."""
    azure = parsed.provider == "azure"
    if hints is None:
        return BILLED_END_TOKENS if azure and not looks_json(parsed) else 0
    if hints.structured:
        return 0
    if hints.schema_with_tools:
        return STRUCTURED_WITH_TOOLS_TOKENS
    return BILLED_END_TOKENS if hints.tools_offered or azure else 0


def looks_json(parsed: ParsedBody) -> bool:
    """A text answer that is one JSON object (what `response_format` JSON modes produce)."""
    text = "".join(parsed.output_text).strip()
    if not (text.startswith("{") and text.endswith("}")):
        return False
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False

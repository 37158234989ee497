"""What a logged request bills as input, rendered as the texts to count plus fixed overheads.

Pure (no tokenizer): `render_request(body)` returns the strings the provider's tokenizer sees and
the framing tokens around them; `sidecar.enrich.tokens` counts the strings. The rules follow
what the providers document; the constants were fitted on the FIT half of the recorded
request/usage pairs of the pool (`tests/fixtures/streams-pool/requests.jsonl.gz`;
`bench/fit_estimation.py` derives every one of them, see `docs/estimation.md`):

OpenAI Chat Completions (and Azure)
    Every message costs 3 tokens of framing plus its role, its `name` (+1) and its content; the
    reply is primed with 3 more (OpenAI cookbook, "How to count tokens with tiktoken":
    https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken). Assistant tool
    calls count their name and arguments, tool results their content.
    Tool definitions are rendered the way the model sees them, a TypeScript namespace
    (https://cookbook.openai.com/articles/openai-harmony, "Function calling"):
    `namespace functions { // description \\n type name = (_: { prop: type, ... }) => any; }`.
    A `response_format` JSON schema is rendered as `# Response Formats ## name // description`
    followed by the schema's JSON (same document; the description once when the schema
    repeats it). A `tool_choice` naming a function repeats its name. A fixed overhead per block
    is added (fitted).
Responses
    `instructions` + `input` items (messages, function calls and their outputs) like chat
    messages; `tools` and `text.format` like chat tools and response formats.
Anthropic Messages
    `system`, `messages` (text, tool_result; tool_use as Claude wrote it, like its output; the
    thinking of earlier turns is not billed) and `tools` (name, description, input_schema JSON),
    plus the tool-use system prompt when tools are given
    (https://docs.anthropic.com/en/docs/build-with-claude/tool-use/overview#pricing documents
    346 tokens with `tool_choice` auto/none and 313 with any/tool for the Claude 4 models; the
    pool bills 335 / 309, and more for the 4.5 generation), an `output_format` schema as indented
    JSON, and a preamble when extended thinking is on. Anthropic's tokenizer is not public: the
    estimator applies the model's calibrated input ratio to the counted text.
Gemini
    `systemInstruction`, `contents` parts and `functionDeclarations`.
Images, audio and files
    Not counted (the request rarely says their size); `media_parts` tells how many were skipped
    so the event can flag the estimate as a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3
# Fitted on the FIT half of the pool's request/usage pairs (gpt-4o, gpt-4o-mini, gpt-4.1,
# gpt-5-mini; bench/fit_estimation.py). The TypeScript rendering of a tool definition lands
# within a token or two of what is billed:
TOOL_DEFINITION_TOKENS = 1  # per function
FORCED_TOOL_CHOICE_TOKENS = 8  # tool_choice "required" or a named function (+ its name)
RESPONSE_FORMAT_TOKENS = -6  # the rendered section is a little longer than what is billed
RESPONSE_FORMAT_WITH_TOOLS_TOKENS = -10  # and shorter still when tools are rendered too
# Assistant tool calls in the history: name and arguments plus 8 per call, and 12 more for a
# parallel group (n >= 2) (the generated ones bill 7, and 14 for the group).
HISTORY_TOOL_CALL_TOKENS = 8
HISTORY_PARALLEL_TOKENS = 12
# Reasoning models (gpt-5, o-series) render tools inside a longer harmony system preamble and
# prime the reply with one token fewer.
HARMONY_TOOLS_EXTRA_TOKENS = 85
HARMONY_MESSAGE_TOKENS = -1
# ... and an assistant turn with tool calls in the history bills 6 more than the chat framing
# (harmony: the call goes to a recipient on the commentary channel).
HARMONY_HISTORY_CALL_TOKENS = 6
# Anthropic's tool-use system prompt: Claude 4 (documented 346 / 313, billed a little less in
# the pool) and the 4.5 generation (sonnet-4-5, haiku-4-5: longer than documented).
ANTHROPIC_TOOLS_AUTO_TOKENS = 335
ANTHROPIC_TOOLS_ANY_TOKENS = 309
ANTHROPIC_45_TOOLS_AUTO_TOKENS = 522
ANTHROPIC_45_TOOLS_ANY_TOKENS = 642
ANTHROPIC_INPUT_MESSAGE_TOKENS = 2  # per message (role framing), fitted
# Tool calls in the history bill the markup Claude wrote around them, as in the output: a
# message's first call and each parameter bill what the output does (the same constants as
# parse/providers/_common.py, one rule of the fit; a test keeps them equal). A further call of
# the same message (parallel calls and their results) bills more than in the output (one
# request shape in the pool), and a tool result a little beyond its content.
ANTHROPIC_HISTORY_TOOL_USE_TOKENS = 32
ANTHROPIC_HISTORY_TOOL_PARAM_TOKENS = 15
ANTHROPIC_HISTORY_NEXT_TOOL_USE_TOKENS = 67
ANTHROPIC_TOOL_RESULT_TOKENS = 4
# Anthropic structured outputs (`output_format` JSON schema): the schema as JSON indented by two
# spaces plus a system preamble.
ANTHROPIC_OUTPUT_FORMAT_TOKENS = 83
# Extended thinking (`thinking` enabled) adds a system preamble of its own.
ANTHROPIC_THINKING_TOKENS = 31

_MEDIA_TYPES = frozenset(
    {"image_url", "input_image", "image", "input_audio", "audio", "file", "input_file", "document"}
)


@dataclass(slots=True)
class Rendered:
    texts: list[str] = field(default_factory=list)  # strings to count, each on its own
    fixed: int = 0  # framing tokens
    token_ids: int = 0  # literal token ids (embeddings input)
    media_parts: int = 0  # images, audio, files: not counted
    style: str = "openai"  # openai | anthropic | gemini | embeddings


def _dumps(value: Any, *, indent: bool = False) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else None).decode()
    except TypeError:
        return ""


# --- JSON schema -> the TypeScript the model sees --------------------------------------------


def _ts_type(schema: Any, defs: dict[str, Any], depth: int) -> str:
    if not isinstance(schema, dict) or depth > 8:
        return "any"
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _ts_type(defs.get(ref.rsplit("/", 1)[-1]), defs, depth + 1)
    if isinstance(schema.get("enum"), list):
        return " | ".join(_dumps(v) for v in schema["enum"]) or "any"
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(_ts_type(s, defs, depth + 1) for s in schema[key]) or "any"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_ts_type({**schema, "type": k}, defs, depth + 1) for k in kind)
    if kind == "array":
        return _ts_type(schema.get("items"), defs, depth + 1) + "[]"
    if kind == "object" or isinstance(schema.get("properties"), dict):
        return _ts_object(schema, defs, depth + 1)
    if kind in ("integer", "number"):
        return "number"
    if kind in ("string", "boolean", "null"):
        return str(kind)
    return "any"


def _ts_object(schema: dict[str, Any], defs: dict[str, Any], depth: int) -> str:
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return "object"
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    lines = ["{"]
    for name, prop in props.items():
        if isinstance(prop, dict) and isinstance(prop.get("description"), str):
            lines.append(f"// {prop['description']}")
        optional = "" if name in required else "?"
        lines.append(f"{name}{optional}: {_ts_type(prop, defs, depth)},")
    lines.append("}")
    return "\n".join(lines)


def render_function(fn: dict[str, Any]) -> str:
    """One function definition as the model sees it."""
    params = fn.get("parameters") or fn.get("input_schema") or {}
    defs = {}
    if isinstance(params, dict):
        for key in ("$defs", "definitions"):
            if isinstance(params.get(key), dict):
                defs.update(params[key])
    head = f"// {fn['description']}\n" if isinstance(fn.get("description"), str) else ""
    body = _ts_object(params, defs, 0) if isinstance(params, dict) else "object"
    return f"{head}type {fn.get('name') or ''} = (_: {body}) => any;\n"


def _functions(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        if isinstance(tool.get("function"), dict):  # chat
            out.append(tool["function"])
        elif tool.get("type") == "function" or "name" in tool:  # Responses, Anthropic
            out.append(tool)
        for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
            if isinstance(decl, dict):  # Gemini
                out.append(decl)
    return out


def _tools(tools: Any, r: Rendered) -> int:
    fns = _functions(tools)
    if not fns:
        return 0
    r.texts.append("# Tools\n\n## functions\n\nnamespace functions {\n\n")
    for fn in fns:
        r.texts.append(render_function(fn))
    r.texts.append("} // namespace functions")
    return len(fns)


def _response_format(fmt: Any, r: Rendered, tools: bool) -> None:
    """A json_schema response format (chat `response_format`, Responses `text.format`). The
    format's description is a comment before the schema, unless the schema starts with the
    same description (pydantic models put their docstring in both): it is billed once."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return
    spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt
    schema = spec.get("schema")
    if schema is None:
        return
    desc = spec.get("description")
    head = f"# Response Formats\n\n## {spec.get('name') or ''}\n\n"
    if isinstance(desc, str) and not (
        isinstance(schema, dict) and schema.get("description") == desc
    ):
        head += f"// {desc}\n"
    r.texts.append(head + _dumps(schema))
    r.fixed += RESPONSE_FORMAT_TOKENS + (RESPONSE_FORMAT_WITH_TOOLS_TOKENS if tools else 0)


# --- messages ---------------------------------------------------------------------------------


def _anthropic_call(part: dict[str, Any], r: Rendered, out: list[str], *, first: bool) -> None:
    """An Anthropic tool_use block of the history: its name, each top-level parameter's name
    and value (strings raw, others as JSON), and the markup around them, billed as in the
    output (see parse/providers/_common.py)."""
    out.append(str(part.get("name") or ""))
    args = part.get("input")
    r.fixed += (
        ANTHROPIC_HISTORY_TOOL_USE_TOKENS if first else ANTHROPIC_HISTORY_NEXT_TOOL_USE_TOKENS
    )
    if not isinstance(args, dict):
        out.append(_dumps(args))
        return
    for key, value in args.items():
        out.append(str(key))
        out.append(value if isinstance(value, str) else _dumps(value))
    r.fixed += ANTHROPIC_HISTORY_TOOL_PARAM_TOKENS * len(args)


def _parts(content: Any, r: Rendered, out: list[str]) -> None:
    """Text of a message's content (a string, or parts / blocks of any supported API)."""
    if isinstance(content, str):
        out.append(content)
        return
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return
    calls = 0
    for part in content:
        if isinstance(part, str):
            out.append(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in _MEDIA_TYPES or "inline_data" in part or "inlineData" in part:
            r.media_parts += 1
            continue
        # Thinking of earlier turns is stripped before billing (Anthropic: "thinking blocks
        # from previous turns are removed from context"), so it is not counted.
        for key in ("text", "refusal"):
            if isinstance(part.get(key), str):
                out.append(part[key])
        if kind == "tool_use":  # Anthropic: the call as Claude wrote it (like its output)
            calls += 1
            _anthropic_call(part, r, out, first=calls == 1)
        elif kind == "tool_result":
            r.fixed += ANTHROPIC_TOOL_RESULT_TOKENS
            _parts(part.get("content"), r, out)
        call = part.get("functionCall") or part.get("function_call")  # Gemini
        if isinstance(call, dict):
            out.append(str(call.get("name") or ""))
            out.append(_dumps(call.get("args")))
        resp = part.get("functionResponse") or part.get("function_response")
        if isinstance(resp, dict):
            out.append(_dumps(resp.get("response")))


def _message(msg: Any, r: Rendered, per_message: int) -> None:
    out: list[str] = []
    if isinstance(msg, str):  # Responses / embeddings input given as strings
        out.append(msg)
    elif isinstance(msg, dict):
        if isinstance(msg.get("role"), str):
            out.append(msg["role"])
        if isinstance(msg.get("name"), str) and msg.get("type") != "function_call":
            r.fixed += TOKENS_PER_NAME
            out.append(msg["name"])
        _parts(msg.get("content"), r, out)
        _parts(msg.get("parts"), r, out)  # Gemini contents[]
        calls = msg.get("tool_calls")
        calls = calls if isinstance(calls, list) else []
        for call in calls:  # chat assistant turns
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                args = fn.get("arguments")
                out.append(str(fn.get("name") or ""))
                out.append(args if isinstance(args, str) else _dumps(args))
        if calls:
            r.fixed += HISTORY_TOOL_CALL_TOKENS * len(calls)
            r.fixed += HISTORY_PARALLEL_TOKENS if len(calls) > 1 else 0
        kind = msg.get("type")
        if kind == "function_call":  # Responses input items
            out.append(str(msg.get("name") or ""))
            args = msg.get("arguments")
            out.append(args if isinstance(args, str) else _dumps(args))
        elif kind == "function_call_output":
            output = msg.get("output")
            out.append(output if isinstance(output, str) else _dumps(output))
    r.texts.append("".join(out))
    r.fixed += per_message


def _is_embeddings(body: dict[str, Any]) -> bool:
    model = body.get("model")
    name = model.lower() if isinstance(model, str) else ""
    return "embedding" in name or "encoding_format" in body or "dimensions" in body


def _is_harmony(model: str | None) -> bool:
    name = (model or "").lower().rsplit("/", 1)[-1]
    if len(name) >= 2 and name[0] == "o" and name[1].isdigit():
        return True
    return (name.startswith("gpt-5") and "-chat" not in name) or name.startswith("gpt-oss")


def render_request(body: Any, model: str | None = None) -> Rendered | None:
    """The texts and framing a request bills as input; None when it is not a request."""
    if not isinstance(body, dict):
        return None
    model = model or (body.get("model") if isinstance(body.get("model"), str) else None)
    r = Rendered()
    if isinstance(body.get("contents"), list) or "systemInstruction" in body:
        return _gemini(body, r)
    if "messages" in body and (isinstance(body.get("system"), (str, list)) or _anthropic(body)):
        return _anthropic_request(body, r, model)
    if _is_embeddings(body) and "input" in body:
        return _embeddings(body, r)
    found = False
    harmony = _is_harmony(model)
    for key in ("instructions",):
        if isinstance(body.get(key), str):
            found = True
            _message({"role": "developer", "content": body[key]}, r, TOKENS_PER_MESSAGE)
    if isinstance(body.get("messages"), list):
        found = True
        for msg in body["messages"]:
            _message(msg, r, TOKENS_PER_MESSAGE)
            if harmony and isinstance(msg, dict) and msg.get("tool_calls"):
                r.fixed += HARMONY_HISTORY_CALL_TOKENS
    value = body.get("input")
    if isinstance(value, str):
        found = True
        _message({"role": "user", "content": value}, r, TOKENS_PER_MESSAGE)
    elif isinstance(value, list):
        found = True
        for item in value:
            _message(item, r, TOKENS_PER_MESSAGE)
    if not found:
        return None
    r.fixed += TOKENS_REPLY_PRIMING + (HARMONY_MESSAGE_TOKENS if harmony else 0)
    functions = _tools(body.get("tools"), r)
    r.fixed += TOOL_DEFINITION_TOKENS * functions
    tools = functions > 0
    if tools:
        choice = body.get("tool_choice")
        if choice == "required" or isinstance(choice, dict):
            r.fixed += FORCED_TOOL_CHOICE_TOKENS
        if isinstance(choice, dict):  # a named function: the instruction repeats its name
            fn = choice.get("function") if isinstance(choice.get("function"), dict) else choice
            if isinstance(fn.get("name"), str):
                r.texts.append(fn["name"])
        if harmony:
            r.fixed += HARMONY_TOOLS_EXTRA_TOKENS
    _response_format(body.get("response_format"), r, tools)
    text = body.get("text")
    if isinstance(text, dict):
        _response_format(text.get("format"), r, tools)
    return r


def _anthropic(body: dict[str, Any]) -> bool:
    """Anthropic-shaped messages: content blocks of Anthropic types, or Anthropic tools."""
    if "output_format" in body or isinstance(body.get("thinking"), dict):
        return True
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and "input_schema" in tool:
            return True
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") in ("tool_use", "tool_result"):
                return True
    return False


def _anthropic_request(body: dict[str, Any], r: Rendered, model: str | None) -> Rendered:
    r.style = "anthropic"
    system = body.get("system")
    if system is not None:
        out: list[str] = []
        _parts(system, r, out)
        r.texts.append("".join(out))
    for msg in body.get("messages") or []:
        _message(msg, r, ANTHROPIC_INPUT_MESSAGE_TOKENS)
    fns = _functions(body.get("tools"))
    if fns:
        for fn in fns:
            r.texts.append(str(fn.get("name") or ""))
            if isinstance(fn.get("description"), str):
                r.texts.append(fn["description"])
            r.texts.append(_dumps(fn.get("input_schema")))
        choice = body.get("tool_choice")
        forced = isinstance(choice, dict) and choice.get("type") in ("any", "tool")
        name = (model or "").lower()
        if "4-5" in name or "4.5" in name:
            r.fixed += ANTHROPIC_45_TOOLS_ANY_TOKENS if forced else ANTHROPIC_45_TOOLS_AUTO_TOKENS
        else:
            r.fixed += ANTHROPIC_TOOLS_ANY_TOKENS if forced else ANTHROPIC_TOOLS_AUTO_TOKENS
    fmt = body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("schema") is not None:
        r.texts.append(_dumps(fmt["schema"], indent=True))
        r.fixed += ANTHROPIC_OUTPUT_FORMAT_TOKENS
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        r.fixed += ANTHROPIC_THINKING_TOKENS
    return r


def _gemini(body: dict[str, Any], r: Rendered) -> Rendered:
    r.style = "gemini"
    for key in ("systemInstruction", "system_instruction"):
        value = body.get(key)
        if value is not None:
            out: list[str] = []
            _parts(value.get("parts") if isinstance(value, dict) else value, r, out)
            r.texts.append("".join(out))
    for msg in body.get("contents") or []:
        _message(msg, r, 0)
    for fn in _functions(body.get("tools")):
        r.texts.append(str(fn.get("name") or ""))
        if isinstance(fn.get("description"), str):
            r.texts.append(fn["description"])
        r.texts.append(_dumps(fn.get("parameters")))
    return r


def _embeddings(body: dict[str, Any], r: Rendered) -> Rendered:
    r.style = "embeddings"
    value = body.get("input")
    if isinstance(value, str):
        r.texts.append(value)
    elif isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            r.token_ids += len(value)
        else:
            for item in value:
                if isinstance(item, list) and all(isinstance(v, int) for v in item):
                    r.token_ids += len(item)
                elif isinstance(item, str):
                    r.texts.append(item)
    return r

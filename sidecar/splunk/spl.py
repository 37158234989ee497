"""Offline SPL checks: macro expansion, pipeline split, syntax problems and the fields read.

Not a full SPL parser: a tokenizer-level check that catches what breaks a search before Splunk
sees it (unbalanced quotes, brackets and parentheses, empty or unknown commands, unknown macros)
and a per-command reading of which fields a search reads and which it creates (eval and stats
`AS`, rename, lookup OUTPUT, predict, addinfo, inputlookup ...). `analyze()` returns both, so a
contract test can check every field read against the event schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Commands the app and the reports may use. Anything else is reported as unknown.
KNOWN_COMMANDS = frozenset(  # a word list
    """search where eval stats eventstats streamstats timechart chart tstats table fields sort
    dedup rename lookup inputlookup makeresults addinfo predict bin bucket head tail
    fillnull append appendcols appendpipe join return format mvexpand rex spath top rare
    transpose xyseries untable addtotals addcoltotals fieldformat delta accum outputlookup
    collect rest""".split()  # noqa: SIM905
)
_STATS_LIKE = {"stats", "eventstats", "streamstats", "timechart", "chart", "tstats"}
_AGG_OPTS = frozenset(  # a word list
    """span limit useother usenull current window bins partial cont prestats summariesonly
    allow_old_summaries global reset_on_change otherstr nullstr agg fixedrange sep format
    time_window""".split()  # noqa: SIM905
)
_KEYWORDS = {"and", "or", "not", "like", "in", "as", "by", "output", "outputnew", "where", "over"}
# Fields every event has or Splunk sets, and search-time modifiers.
BUILTIN_FIELDS = frozenset(  # a word list
    """_time _raw _indextime host source sourcetype index splunk_server linecount eventtype
    earliest latest count""".split()  # noqa: SIM905
)

_MACRO = re.compile(r"`([A-Za-z0-9_]+)(\([^`]*\))?`")
_TOKEN = re.compile(
    r"""(?P<str>"(?:[^"\\]|\\.)*")|(?P<sq>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?[A-Za-z]*)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_{}]*)|(?P<op>==|!=|<=|>=|[=<>+\-*/%.,()])|(?P<other>\S)""",
    re.X,
)


class SplError(ValueError):
    """A problem found in a search."""


@dataclass
class Analysis:
    commands: list[str] = field(default_factory=list)  # command names, in order, subsearches too
    used: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    money_ok: bool = True  # every aggregation of a cost field comes after dedup on event_id
    money: bool = False  # the search aggregates a cost field over raw events
    # fields read before any command of the search created them (must come from the events)
    from_events: set[str] = field(default_factory=set)

    def use(self, name: str) -> None:
        self.used.add(name)
        if name not in self.created:
            self.from_events.add(name)


def expand_macros(spl: str, macros: dict[str, str], depth: int = 0) -> str:
    """Replace each `name` by its definition (recursively). Unknown macros raise SplError."""
    if depth > 10:
        raise SplError("macro expansion deeper than 10 levels (a macro uses itself?)")

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if m.group(2):
            raise SplError(f"macro `{name}` is called with arguments; none of ours take any")
        if name not in macros:
            raise SplError(f"unknown macro `{name}`")
        return expand_macros(macros[name], macros, depth + 1)

    return _MACRO.sub(one, spl)


def split_pipeline(spl: str) -> list[str]:
    """Top-level commands (text between top-level pipes); checks quotes and brackets balance."""
    parts: list[str] = []
    stack: list[str] = []
    start = 0
    i = 0
    pairs = {"(": ")", "[": "]"}
    while i < len(spl):
        c = spl[i]
        if c == '"':
            j = i + 1
            while j < len(spl) and spl[j] != '"':
                j += 2 if spl[j] == "\\" else 1
            if j >= len(spl):
                raise SplError(f"unbalanced double quote at offset {i}")
            i = j
        elif c in pairs:
            stack.append(pairs[c])
        elif c in ")]":
            if not stack or stack.pop() != c:
                raise SplError(f"unbalanced {c!r} at offset {i}")
        elif c == "|" and not stack:
            parts.append(spl[start:i])
            start = i + 1
        i += 1
    if stack:
        raise SplError(f"unclosed {'(' if stack[-1] == ')' else '['}")
    parts.append(spl[start:])
    return parts


def _subsearches(text: str) -> tuple[str, list[str]]:
    """Cut top-level [ ... ] subsearches out of a command's text."""
    out, subs, depth, buf, in_str = [], [], 0, [], False
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            in_str = not in_str
        if not in_str and c == "[":
            depth += 1
            if depth == 1:
                i += 1
                continue
        if not in_str and c == "]":
            depth -= 1
            if depth == 0:
                subs.append("".join(buf))
                buf = []
                out.append(" [] ")
                i += 1
                continue
        (buf if depth else out).append(c)
        i += 1
    return "".join(out), subs


def _tokens(text: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "", m.group()) for m in _TOKEN.finditer(text)]


def _expr_fields(toks: list[tuple[str, str]], a: Analysis) -> None:
    """Field references in an eval/where expression or a search clause."""
    for i, (kind, val) in enumerate(toks):
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "sq":
            a.use(val[1:-1])
        elif kind == "ident" and nxt != "(" and val.lower() not in _KEYWORDS:
            a.use(val)


def _search_fields(toks: list[tuple[str, str]], a: Analysis) -> None:
    """In a search clause only `field OP value` names a field; bare words are terms."""
    for i, (kind, val) in enumerate(toks):
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        prev = toks[i - 1][1] if i else ""
        if kind == "ident" and nxt in {"=", "!=", "<", ">", "<=", ">="} and prev not in {"=", "!="}:
            a.use(val)


def _split_top(toks: list[tuple[str, str]], sep: str = ",") -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for t in toks:
        depth += t[1] == "("
        depth -= t[1] == ")"
        if t[1] == sep and depth == 0:
            out.append([])
        else:
            out[-1].append(t)
    return [x for x in out if x]


def _eval(toks: list[tuple[str, str]], a: Analysis) -> None:
    for part in _split_top(toks):
        if len(part) >= 2 and part[0][0] == "ident" and part[1][1] == "=":
            _expr_fields(part[2:], a)
            a.created.add(part[0][1])
        else:
            _expr_fields(part, a)


def _stats(name: str, toks: list[tuple[str, str]], a: Analysis) -> None:
    lower = [v.lower() for _, v in toks]
    where_at = lower.index("where") if name == "tstats" and "where" in lower else None
    by_at = lower.index("by") if "by" in lower else len(toks)
    aggs = toks[: where_at if where_at is not None else by_at]
    if where_at is not None:
        _search_fields(toks[where_at + 1 : by_at], a)
    i = 0
    while i < len(aggs):
        kind, val = aggs[i]
        nxt = aggs[i + 1][1] if i + 1 < len(aggs) else ""
        if kind == "ident" and nxt == "=" and val.lower() in _AGG_OPTS:
            i += 3
            continue
        if kind == "ident" and nxt == "(":
            depth, j = 0, i + 1
            while j < len(aggs):
                depth += aggs[j][1] == "("
                depth -= aggs[j][1] == ")"
                if depth == 0:
                    break
                j += 1
            inner = aggs[i + 2 : j]
            if inner and inner[0][1] == "eval":
                _expr_fields(inner[2:-1], a)
            else:
                _expr_fields(inner, a)
            i = j + 1
            if i + 1 < len(aggs) and aggs[i][1].lower() == "as":
                a.created.add(aggs[i + 1][1])
                i += 2
            continue
        if kind == "ident" and val.lower() == "count":
            a.created.add("count")
        if kind == "ident" and val.lower() == "as" and i + 1 < len(aggs):
            a.created.add(aggs[i + 1][1])
            i += 2
            continue
        i += 1
    rest = toks[by_at + 1 :]
    i = 0
    while i < len(rest):
        kind, val = rest[i]
        if i + 1 < len(rest) and rest[i + 1][1] == "=":
            i += 3  # span=1h, limit=10 ...
            continue
        if kind == "ident":
            a.use(val)
        i += 1


def _names(toks: list[tuple[str, str]]) -> list[str]:
    return [v.strip('"') for k, v in toks if k in {"ident", "str"}]


def _lookup(toks: list[tuple[str, str]], a: Analysis) -> None:
    words = [v for k, v in toks if k in {"ident", "str"} or v == ","]
    mode = "input"
    i = 1  # words[0] is the lookup table
    while i < len(words):
        w = words[i]
        if w.lower() in {"output", "outputnew"}:
            mode = "output"
        elif w == ",":
            pass
        elif i + 2 < len(words) and words[i + 1].lower() == "as":
            if mode == "input":
                a.use(w)
            a.created.add(words[i + 2])
            i += 2
        elif mode == "input":
            a.use(w)
        else:
            a.created.add(w)
        i += 1


def analyze(spl: str, lookups: dict[str, list[str]] | None = None) -> Analysis:
    """Problems, commands and fields of an (already macro-expanded) search."""
    a = Analysis()
    _analyze(spl, a, lookups or {})
    return a


def _analyze(spl: str, a: Analysis, lookups: dict[str, list[str]]) -> None:
    try:
        parts = split_pipeline(spl)
    except SplError as exc:
        a.problems.append(str(exc))
        return
    deduped = False
    for n, raw in enumerate(parts):
        text, subs = _subsearches(raw)
        for sub in subs:
            _analyze(sub, a, lookups)
        stripped = text.strip()
        if not stripped:
            if n == 0 and len(parts) > 1:
                continue  # a search starting with `|` (generating command)
            a.problems.append(f"empty command at position {n}")
            continue
        if n == 0 and not spl.lstrip().startswith("|"):
            name, args = "search", stripped
        else:
            name, _, args = stripped.partition(" ")
            name = name.lower()
        a.commands.append(name)
        if name not in KNOWN_COMMANDS:
            a.problems.append(f"unknown command {name!r}")
            continue
        toks = _tokens(args)
        _command(name, toks, a, lookups)
        if name == "dedup" and "event_id" in _names(toks):
            deduped = True
        if name == "stats" and "event_id" in _by_fields(toks):
            deduped = True  # stats ... BY event_id collapses duplicates too
        if name in _STATS_LIKE - {"tstats"} and any(money_field(f) for f in _names(toks)):
            a.money = True
            if not deduped:
                a.money_ok = False


def _by_fields(toks: list[tuple[str, str]]) -> list[str]:
    lower = [v.lower() for _, v in toks]
    return _names(toks[lower.index("by") + 1 :]) if "by" in lower else []


MONEY_FIELDS = frozenset(
    {
        "estimated_cost_usd",
        "cost_input_usd",
        "cost_cached_input_usd",
        "cost_cache_write_usd",
        "cost_cache_write_1h_usd",
        "cost_output_usd",
    }
)


def money_field(name: str) -> bool:
    """A cost field of the event schema (what a duplicate would count twice)."""
    return name in MONEY_FIELDS


def _command(name: str, toks: list[tuple[str, str]], a: Analysis, lookups: dict) -> None:
    if name == "search":
        _search_fields(toks, a)
    elif name in {"where"}:
        _expr_fields(toks, a)
    elif name in {"eval", "fieldformat"}:
        _eval(toks, a)
    elif name in _STATS_LIKE:
        _stats(name, toks, a)
    elif name in {"table", "fields", "dedup", "fillnull", "mvexpand", "return", "top", "rare"}:
        skip_next = False
        for i, (kind, val) in enumerate(toks):
            nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
            if skip_next:
                skip_next = False
            elif nxt == "=":
                skip_next = True  # value=0, consecutive=true
            elif kind == "ident":
                a.use(val)
    elif name == "sort":
        for v in (v for k, v in toks if k == "ident"):
            a.use(v)
    elif name == "rename":
        for part in _split_top(toks):
            words = _names(part)
            if len(words) == 3 and words[1].lower() == "as":
                a.use(words[0])
                a.created.add(words[2])
            else:
                a.problems.append(f"rename needs `old AS new`, got {' '.join(words)!r}")
    elif name == "lookup":
        _lookup(toks, a)
    elif name == "inputlookup":
        table = _names(toks)[0] if _names(toks) else ""
        if table not in lookups:
            a.problems.append(f"unknown lookup {table!r}")
        a.created.update(lookups.get(table, []))
    elif name == "makeresults":
        a.created.add("_time")
    elif name == "addinfo":
        a.created.update({"info_min_time", "info_max_time", "info_search_time", "info_sid"})
    elif name == "predict":
        words = _names(toks)
        a.use(words[0])
        for i, w in enumerate(words):
            if w.lower() == "as" and i + 1 < len(words):
                a.created.add(words[i + 1])
        for i, (kind, val) in enumerate(toks):
            if kind == "ident" and re.fullmatch(r"(upper|lower)\d+", val) and i + 2 < len(toks):
                a.created.add(toks[i + 2][1])
    elif name in {"bin", "bucket"} and toks and toks[0][0] == "ident":
        a.use(toks[0][1])

"""Build typed config dataclasses from plain YAML data.

The rules, so that every mistake is reported with its key path and a fix:
- an unknown key is rejected with a suggestion (`sinks[0].batch.max_byte: unknown key; did you
  mean max_bytes?`);
- a wrong type names the key and the expected type;
- a union of dataclasses (`sinks`) is picked by its `type` key;
- `${ENV_VAR}` and `${ENV_VAR:-default}` are substituted in strings before anything else, so
  secrets stay out of the file. An unset variable with no default is an error naming it.
- `${credential:NAME}` is the content of the systemd credential NAME (`LoadCredential=NAME:...`
  in the unit): the file `$CREDENTIALS_DIRECTORY/NAME`, trailing newline removed. With
  `${credential:NAME:-fallback}` the fallback (text, or one `${ENV_VAR}` / `${ENV_VAR:-x}`) is
  used when there is no such credential, e.g. `${credential:hec_token:-${SPLUNK_HEC_TOKEN}}`;
- a numeric field declared with `metadata={"range": (lo, hi)}` must lie in [lo, hi] (the error
  names the key, the value and the range); a field with `metadata={"secret": True}` is stripped
  of surrounding whitespace.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from sidecar.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_CRED = re.compile(
    r"\$\{credential:([A-Za-z0-9_.@-]+)"
    r"(?::-(\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}|[^}]*))?\}"
)
_ANY = re.compile(f"{_CRED.pattern}|{_ENV.pattern}")


def read_credential(name: str, environ: Any) -> str | None:
    """The systemd credential `name` ($CREDENTIALS_DIRECTORY/name), or None when absent."""
    folder = environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")
    except FileNotFoundError:
        return None


def substitute_env(data: Any, env: dict[str, str] | None = None, path: str = "") -> Any:
    """Replace `${NAME}`, `${NAME:-default}` and `${credential:NAME...}` in every string."""
    environ = os.environ if env is None else env
    if isinstance(data, str):

        def env_value(name: str, default: str | None) -> str:
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(
                path,
                f"environment variable {name} is not set",
                f"export {name}=... or write ${{{name}:-default}}",
            )

        def repl(m: re.Match[str]) -> str:
            cred, fallback, name, default = m.groups()
            if cred is None:
                return env_value(name, default)
            value = read_credential(cred, environ)
            if value is not None:
                return value
            if fallback is not None:
                inner = _ENV.fullmatch(fallback)
                return env_value(inner.group(1), inner.group(2)) if inner else fallback
            where = environ.get("CREDENTIALS_DIRECTORY")
            raise ConfigError(
                path,
                f"credential {cred} not found"
                + (f" in {where}" if where else " ($CREDENTIALS_DIRECTORY is not set)"),
                f"add LoadCredential={cred}:/etc/llm-hec-sidecar/{cred} to the unit, or write "
                f"${{credential:{cred}:-${{ENV_VAR}}}} to fall back to a variable",
            )

        return _ANY.sub(repl, data)
    if isinstance(data, dict):
        return {k: substitute_env(v, env, _join(path, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_env(v, env, f"{path}[{i}]") for i, v in enumerate(data)]
    return data


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _fail(path: str, tp: Any, value: Any) -> ConfigError:
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return ConfigError(path, f"expected {_type_name(tp)}, got {shown}", "")


def build(tp: Any, data: Any, path: str) -> Any:
    """Convert `data` to type `tp`, raising ConfigError with the key path on any mismatch."""
    origin = get_origin(tp)
    if tp is Any:
        return data
    if origin in (Union, types.UnionType):
        return _build_union(tp, data, path)
    if origin is Literal:
        if data in get_args(tp):
            return data
        options = ", ".join(str(a) for a in get_args(tp))
        guess = difflib.get_close_matches(str(data), [str(a) for a in get_args(tp)], n=1)
        hint = f"did you mean {guess[0]}?" if guess else f"use one of: {options}"
        raise ConfigError(path, f"{data!r} is not one of {options}", hint)
    if origin is list:
        if not isinstance(data, list):
            raise _fail(path, tp, data)
        (item,) = get_args(tp)
        return [build(item, v, f"{path}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise _fail(path, tp, data)
        ktp, vtp = get_args(tp)
        return {build(ktp, k, path): build(vtp, v, _join(path, str(k))) for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, data, path)
    if tp is bool:
        if isinstance(data, bool):
            return data
        raise _fail(path, tp, data)
    if tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise _fail(path, tp, data)
    if tp is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
        raise _fail(path, tp, data)
    if tp is str:
        if isinstance(data, str):
            return data
        if isinstance(data, int | float) and not isinstance(data, bool):
            return str(data)  # `discount_pct: 15` is fine as "15"
        raise _fail(path, tp, data)
    if tp is type(None):
        if data is None:
            return None
        raise _fail(path, tp, data)
    raise ConfigError(path, f"unsupported config type {tp!r}", "this is a bug")


def _build_union(tp: Any, data: Any, path: str) -> Any:
    args = get_args(tp)
    if data is None and type(None) in args:
        return None
    classes = [a for a in args if dataclasses.is_dataclass(a)]
    if len(classes) > 1:
        # A tagged union: pick the alternative by its `type` key.
        if not isinstance(data, dict):
            raise _fail(path, tp, data)
        tags = {_tag(c): c for c in classes}
        tag = data.get("type")
        if tag not in tags:
            options = ", ".join(sorted(tags))
            raise ConfigError(
                _join(path, "type"),
                f"{tag!r} is not a known type" if tag is not None else "missing `type`",
                f"use one of: {options}",
            )
        return build(tags[tag], data, path)
    errors: list[ConfigError] = []
    for alt in args:
        if alt is type(None):
            continue
        try:
            return build(alt, data, path)
        except ConfigError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    raise _fail(path, tp, data)


def _tag(cls: Any) -> str:
    hints = typing.get_type_hints(cls)
    (tag,) = get_args(hints["type"])
    return str(tag)


def _build_dataclass(cls: Any, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(path, cls, data)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = _join(path, str(key))
        if key not in known:
            guess = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f"did you mean {guess[0]}?" if guess else f"known keys: {', '.join(known)}"
            raise ConfigError(key_path, "unknown key", hint)
        value = build(hints[key], value, key_path)
        meta = known[key].metadata
        if meta.get("secret") and isinstance(value, str):
            value = value.strip()  # a token read from a file often ends in a newline
        if "range" in meta:
            check_range(value, meta["range"], key_path)
        kwargs[key] = value
    return cls(**kwargs)


def check_range(value: Any, bounds: tuple[Any, Any], path: str) -> None:
    """A numeric option declared with `metadata={"range": (lo, hi)}` must lie in [lo, hi]."""
    lo, hi = bounds
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if not lo <= value <= hi:  # also refuses NaN
        raise ConfigError(path, f"{value!r} is out of range", f"use a value from {lo} to {hi}")

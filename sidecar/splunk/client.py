"""splunkd REST through splunk-sdk: log in, run a search, install an app. The only splunklib user.

Everything splunklib raises is turned into `SplunkError` (with the HTTP status and Splunk's
message, never a password or token), so callers do not depend on splunk-sdk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from splunklib import binding, client, results


class SplunkError(Exception):
    """splunkd refused or failed a request (the message says what and where)."""


@dataclass(frozen=True)
class Target:
    """Where splunkd's management port is and how to authenticate (token wins over password)."""

    url: str  # e.g. https://splunk.example.com:8089
    username: str | None = None
    password: str | None = None
    token: str | None = None  # a Splunk authentication token (Bearer), not a HEC token
    verify_tls: bool = True


@contextmanager
def _errors(what: str, url: str) -> Iterator[None]:
    try:
        yield
    except SplunkError:
        raise
    except binding.AuthenticationError as exc:  # before HTTPError: it is one
        raise SplunkError(f"{what}: login to {url} failed (check the credentials)") from exc
    except binding.HTTPError as exc:
        raise SplunkError(f"{what}: {url} answered HTTP {exc.status}: {_message(exc)}") from exc
    except OSError as exc:
        raise SplunkError(f"{what}: cannot reach {url}: {exc}") from exc


def _message(exc: binding.HTTPError) -> str:
    body = getattr(exc, "body", b"") or b""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        msgs = json.loads(text).get("messages", [])
        return "; ".join(m.get("text", "") for m in msgs) or text[:300]
    except (ValueError, AttributeError):
        return text[:300] or str(exc.reason)


def connect(target: Target) -> client.Service:
    """A logged-in splunklib Service for `target` (one POST auth/login unless a token is given)."""
    parts = urlsplit(target.url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SplunkError(f"splunkd URL {target.url!r} must look like https://host:8089")
    kwargs: dict[str, Any] = {
        "scheme": parts.scheme,
        "host": parts.hostname,
        "port": parts.port or 8089,
        "verify": target.verify_tls,
        "autologin": True,
    }
    if target.token:
        kwargs["splunkToken"] = target.token
    elif target.username and target.password:
        kwargs["username"] = target.username
        kwargs["password"] = target.password
    else:
        raise SplunkError(
            "no credentials: set SPLUNK_TOKEN, or SPLUNK_USERNAME and SPLUNK_PASSWORD"
        )
    with _errors("connect", target.url):
        return client.connect(**kwargs)


def search(service: client.Service, query: str, earliest: str, latest: str) -> list[dict[str, Any]]:
    """Rows of a oneshot search (all of them); a FATAL or ERROR message raises SplunkError."""
    url = f"{service.scheme}://{service.host}:{service.port}"
    with _errors("search", url):
        stream = service.jobs.oneshot(
            query, output_mode="json", earliest_time=earliest, latest_time=latest, count=0
        )
        rows: list[dict[str, Any]] = []
        for item in results.JSONResultsReader(stream):
            if isinstance(item, results.Message):
                if item.type in {"FATAL", "ERROR"}:
                    raise SplunkError(f"search failed: {item.message}")
            elif isinstance(item, dict):
                rows.append(item)
        return rows


def install_app(service: client.Service, package: str, app_id: str) -> dict[str, Any]:
    """Install or upgrade an app from `package` (a path on the splunkd host, or a URL splunkd
    can fetch) with POST apps/local (filename=true, update=true); returns the installed app's
    content (version, label ...) as splunkd reports it afterwards."""
    url = f"{service.scheme}://{service.host}:{service.port}"
    with _errors("install", url):
        service.post("apps/local", name=package, filename=True, update=True, output_mode="json")
        body = service.get(f"apps/local/{app_id}", output_mode="json").body.read()
        entries = json.loads(body).get("entry", [])
        if not entries:
            raise SplunkError(f"install: {url} does not list app {app_id!r} after installing it")
        content = dict(entries[0].get("content", {}))
        content["name"] = entries[0].get("name", app_id)
        return content

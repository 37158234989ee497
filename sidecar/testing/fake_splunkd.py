"""A small fake splunkd management port (aiohttp, 127.0.0.1) for the `splunk` commands' tests.

It answers the REST endpoints splunk-sdk calls, shaped as the Splunk REST API reference
documents them (https://docs.splunk.com/Documentation/Splunk/latest/RESTREF):
- POST /services/auth/login (form username, password) -> XML `<response><sessionKey>`; a wrong
  password -> 401 with `<messages><msg type="WARN">Login failed</msg>`;
- GET /services/server/info -> Atom feed whose entry content has `version` (splunk-sdk reads it
  to choose search/v2/jobs on Splunk 9.0.2 and later);
- POST /services/search/v2/jobs and /services/search/jobs with exec_mode=oneshot and
  output_mode=json -> `{"preview": false, "init_offset": 0, "messages": [], "fields": [...],
  "results": [...]}`; the rows come from the `responder(query, earliest, latest)` the test gives;
- POST /services/apps/local (name, filename=true, update) -> installs the package named by a path
  or an http URL (fetched from 127.0.0.1, as splunkd fetches it), checking that it is a tarball
  with one app folder and `default/app.conf`; GET /services/apps/local/<name> (output_mode=json).
Every other request is 404; a request without `Authorization: Splunk <sessionKey>` or
`Bearer <token>` is 401. Requests are recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import configparser
import io
import json
import secrets
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from sidecar.testing.threaded import run_in_thread

Responder = Callable[[str, str, str], list[dict[str, Any]]]

_ATOM = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:s="http://dev.splunk.com/ns/rest">
  <title>{title}</title>
  <id>{base}/services/{path}</id>
  <updated>2026-01-01T00:00:00+00:00</updated>
  <entry>
    <title>{title}</title>
    <id>{base}/services/{path}/{title}</id>
    <updated>2026-01-01T00:00:00+00:00</updated>
    <link href="/services/{path}/{title}" rel="alternate"/>
    <content type="text/xml">
      <s:dict>
{keys}
      </s:dict>
    </content>
  </entry>
</feed>
"""


class SearchFailed(Exception):
    """Raised by a responder: the fake answers 400 with a FATAL message, as splunkd does."""


class FakeSplunkd:
    def __init__(
        self,
        *,
        username: str = "admin",
        password: str = "changeme-test",
        token: str | None = None,
        version: str = "9.2.1",
        responder: Responder | None = None,
    ) -> None:
        self.username, self.password, self.token = username, password, token
        self.version = version
        self.responder: Responder = responder or (lambda q, e, latest: [])
        self.sessions: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, form)
        self.searches: list[dict[str, str]] = []
        self.apps: dict[str, dict[str, Any]] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/services/auth/login", self._login)
        app.router.add_get("/services/server/info", self._info)
        for path in ("search/v2/jobs", "search/jobs"):  # splunk-sdk adds a trailing slash
            app.router.add_post(f"/services/{path}", self._jobs)
            app.router.add_post(f"/services/{path}/", self._jobs)
        app.router.add_post("/services/apps/local", self._install)
        app.router.add_get("/services/apps/local/{name}", self._app)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def run_in_thread(self) -> tuple[str, Callable[[], None]]:
        """Serve from a daemon thread (splunk-sdk is synchronous). Returns (url, stop)."""
        return run_in_thread(self.start, self.stop, "fake splunkd")

    # -- helpers --------------------------------------------------------------------------
    async def _form(self, request: web.Request) -> dict[str, str]:
        # splunk-sdk sends form bodies without a Content-Type; splunkd reads them as a form anyway
        form = dict(urllib.parse.parse_qsl(await request.text(), keep_blank_values=True))
        form.update({k: v for k, v in request.query.items() if k not in form})
        self.requests.append((request.method, request.path, form))
        return form

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Splunk "):
            return auth[7:] in self.sessions
        return bool(self.token) and auth == f"Bearer {self.token}"

    @staticmethod
    def _unauthorized() -> web.Response:
        body = '<response><messages><msg type="WARN">call not properly authenticated</msg>'
        return web.Response(status=401, text=body + "</messages></response>")

    @staticmethod
    def _json(status: int, payload: dict[str, Any]) -> web.Response:
        return web.Response(
            status=status, text=json.dumps(payload), content_type="application/json"
        )

    # -- handlers -------------------------------------------------------------------------
    async def _login(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if form.get("username") != self.username or form.get("password") != self.password:
            body = '<response><messages><msg type="WARN">Login failed</msg></messages></response>'
            return web.Response(status=401, text=body, content_type="text/xml")
        key = secrets.token_hex(16)
        self.sessions.add(key)
        body = f"<response>\n  <sessionKey>{key}</sessionKey>\n</response>\n"
        return web.Response(text=body, content_type="text/xml")

    async def _info(self, request: web.Request) -> web.Response:
        await self._form(request)
        if not self._authorized(request):
            return self._unauthorized()
        keys = "\n".join(
            f'        <s:key name="{k}">{v}</s:key>'
            for k, v in {"version": self.version, "serverName": "fake-splunkd"}.items()
        )
        text = _ATOM.format(title="server-info", base=self.url, path="server/info", keys=keys)
        return web.Response(text=text, content_type="text/xml")

    async def _jobs(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if not self._authorized(request):
            return self._unauthorized()
        if form.get("exec_mode") != "oneshot" or form.get("output_mode") != "json":
            return self._json(400, {"messages": [{"type": "ERROR", "text": "fake: oneshot+json"}]})
        self.searches.append(form)
        query = form.get("search", "")
        try:
            rows = self.responder(query, form.get("earliest_time", ""), form.get("latest_time", ""))
        except SearchFailed as exc:
            return self._json(400, {"messages": [{"type": "FATAL", "text": str(exc)}]})
        names = sorted({k for row in rows for k in row})
        # splunkd sends every value as a string (or a list of strings for multivalue fields)
        out = [{k: v if isinstance(v, list) else str(v) for k, v in row.items()} for row in rows]
        payload = {
            "preview": False,
            "init_offset": 0,
            "messages": [],
            "fields": [{"name": n} for n in names],
            "results": out,
        }
        return self._json(200, payload)

    async def _install(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if not self._authorized(request):
            return self._unauthorized()
        name = form.get("name", "")
        if form.get("filename") not in {"1", "true", "True"}:
            return self._json(400, {"messages": [{"type": "ERROR", "text": "fake: filename=true"}]})
        try:
            if name.startswith("http://127.0.0.1:"):
                data = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(name, timeout=10).read()
                )
            else:
                data = Path(name).read_bytes()
            app_id, version = _inspect_package(data)
        except (OSError, tarfile.TarError, ValueError, configparser.Error) as exc:
            text = f"Error during app install: failed to extract app from {name}: {exc}"
            return self._json(400, {"messages": [{"type": "ERROR", "text": text}]})
        if app_id in self.apps and form.get("update") not in {"1", "true", "True"}:
            text = f"An app with the name {app_id} already exists"
            return self._json(409, {"messages": [{"type": "ERROR", "text": text}]})
        status = 200 if app_id in self.apps else 201
        self.apps[app_id] = {
            "version": version,
            "label": app_id,
            "disabled": False,
            "size": len(data),
        }
        return self._json(status, {"entry": [{"name": app_id, "content": self.apps[app_id]}]})

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._form(request)
        text = f"Not Found: {request.path}"
        return self._json(404, {"messages": [{"type": "ERROR", "text": text}]})

    async def _app(self, request: web.Request) -> web.Response:
        await self._form(request)
        if not self._authorized(request):
            return self._unauthorized()
        name = request.match_info["name"]
        if name not in self.apps:
            text = f"Could not find object id={name}"
            return self._json(404, {"messages": [{"type": "ERROR", "text": text}]})
        return self._json(200, {"entry": [{"name": name, "content": self.apps[name]}]})


def _inspect_package(data: bytes) -> tuple[str, str]:
    """(app id, version) of a .tar.gz app package; ValueError when it is not one."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1 or any(n.startswith(("./", "/")) for n in names):
            raise ValueError(f"expected one app folder, got {sorted(tops)}")
        app_id = tops.pop()
        member = tar.extractfile(f"{app_id}/default/app.conf")
        if member is None:
            raise ValueError("no default/app.conf")
        conf = configparser.RawConfigParser(interpolation=None)
        conf.read_string(member.read().decode("utf-8"))
        return app_id, conf.get("launcher", "version")

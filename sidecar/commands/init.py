"""`llm-hec-sidecar init`: a starting point for a real host, asking nothing.

Writes an annotated `config.yaml` for a proxy preset (`--proxy nginx|caddy|generic`), with the
HEC token and the hash key read from systemd credentials (or the environment), and with
`--systemd DIR` the unit and its environment file from the package data. Prints the next steps.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path

UNIT = "llm-hec-sidecar.service"
DEFAULT_FILE = "llm-hec-sidecar.default"
STATE = "${STATE_DIRECTORY:-/var/lib/llm-hec-sidecar}"

PRESETS: dict[str, dict[str, str | None]] = {
    "nginx": {
        "access": "/var/log/nginx/llm-access.log",
        "body": "/var/log/nginx/llm-body/body.log",
        "access_format": "nginx_json",
        "note": "the access log is `log_format llm_json`, the body log the Lua module's "
        "(examples/nginx in the source repository)",
    },
    "caddy": {
        "access": "/var/log/caddy/llm-access.log",
        "body": None,
        "access_format": "caddy",
        "note": "Caddy's JSON access log; Caddy writes no body log, so usage comes only from "
        "what the access log carries (add a body_log if your proxy writes one)",
    },
    "generic": {
        "access": "/var/log/llm-proxy/access.log",
        "body": "/var/log/llm-proxy/body.log",
        "access_format": "generic",
        "note": "any JSON-lines access log: map its field names below",
    },
}

GENERIC_FIELDS = """\
        fields:                      # canonical name -> dotted path in your access log line
          request_id: request_id     # required: the key that joins the two logs
          time: ts                   # epoch seconds of the request end
          method: method
          path: path
          status: status
          duration_ms: duration_ms
          upstream_host: upstream_host
          user: user
          tenant: tenant
          api_key: api_key           # hashed at once, never forwarded
        headers_path: response_headers   # dotted path of the response-header map (rate limits)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--proxy", choices=sorted(PRESETS), default="nginx", help="proxy preset")
    p.add_argument("--hec-url", default=None, help="HEC endpoint, e.g. https://splunk:8088")
    p.add_argument("--index", default=None, help="Splunk index (default: the token's)")
    p.add_argument("--access-log", default=None, help="access log path or glob")
    p.add_argument("--body-log", default=None, help="body log path or glob")
    p.add_argument(
        "--start-at",
        choices=["beginning", "end"],
        default="end",
        help="where to start in logs seen for the first time (default: end)",
    )
    p.add_argument("-o", "--output", default="config.yaml", help="where to write the config")
    p.add_argument("--systemd", metavar="DIR", default=None, help="also write the unit files")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def render_config(
    proxy: str,
    *,
    hec_url: str | None,
    index: str | None,
    access_log: str | None = None,
    body_log: str | None = None,
    start_at: str = "end",
) -> str:
    preset = PRESETS[proxy]
    access = access_log or preset["access"]
    body = body_log or preset["body"]
    out = [
        f"# llm-hec-sidecar configuration, written by `llm-hec-sidecar init --proxy {proxy}`.",
        "# Every key is explained in the annotated reference config.yaml of the project.",
        "# Check it offline:  llm-hec-sidecar validate -c THIS_FILE",
        "# Check it live:     llm-hec-sidecar check -c THIS_FILE",
        "#",
        "# `${credential:NAME}` is a systemd credential (LoadCredential=NAME:... in the unit),",
        "# `${NAME:-x}` an environment variable with a default.",
        "",
        f"# Preset {proxy}: {preset['note']}.",
        "sources:",
        "  - name: proxy                      # part of every event_id: keep it stable",
        "    access_log:",
        f"      paths: [{access}]",
        "      format:",
        f"        type: {preset['access_format']}",
    ]
    if proxy == "generic":
        out.append(GENERIC_FIELDS.rstrip("\n"))
    if body:
        out += [
            "    body_log:",
            f"      paths: [{body}]",
            "      format:",
            "        type: chunks                 # chunks | bodies",
        ]
    out += [
        f"    start_at: {start_at:<27} # beginning | end: where a log seen first is read from",
        "",
        f"state_dir: {STATE}   # checkpoints, spool, key",
        "",
        "identity:",
        "  hash_key: ${credential:hash_key:-${SIDECAR_HASH_KEY:-}}   # empty: a key in state_dir",
        "",
    ]
    if hec_url:
        out += [
            "sinks:",
            "  - type: hec",
            f"    endpoints: [{hec_url}]",
            "    token: ${credential:hec_token:-${SPLUNK_HEC_TOKEN}}   # never the token itself",
            f"    index: {index or 'null'}                      # null = the token's default index",
            "    tls: {verify: true, ca_file: null}",
        ]
    else:
        out += [
            "sinks:                             # no --hec-url given: events go to a file for now",
            "  - type: file",
            f"    path: {STATE}/events.ndjson",
            "  # - type: hec",
            "  #   endpoints: [https://splunk.example.com:8088]",
            "  #   token: ${credential:hec_token:-${SPLUNK_HEC_TOKEN}}",
            f"  #   index: {index or 'llm'}",
        ]
    out += [
        "",
        "server:",
        "  listen: 127.0.0.1:9178             # /health and /metrics",
        "heartbeat:",
        "  interval_secs: 60                  # llm:sidecar events: alert in Splunk on silence",
        "log:",
        "  format: logfmt                     # logfmt | json | text",
        "  level: info                        # re-read on SIGHUP",
        "",
    ]
    return "\n".join(out)


def packaged(name: str) -> bytes:
    """A file shipped in the package data (the unit and the environment file)."""
    return resources.files("sidecar").joinpath("data", name).read_bytes()


def _write(path: Path, data: bytes, force: bool, mode: int = 0o644) -> None:
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def run(args: argparse.Namespace) -> int:
    text = render_config(
        args.proxy,
        hec_url=args.hec_url,
        index=args.index,
        access_log=args.access_log,
        body_log=args.body_log,
        start_at=args.start_at,
    )
    out = Path(args.output)
    written = []
    try:
        _write(out, text.encode(), args.force, mode=0o600)  # it may come to hold a secret
        written.append(str(out))
        if args.systemd:
            folder = Path(args.systemd)
            _write(folder / UNIT, packaged(UNIT), args.force)
            _write(folder / DEFAULT_FILE, packaged(DEFAULT_FILE), args.force)
            written += [str(folder / UNIT), str(folder / DEFAULT_FILE)]
    except (FileExistsError, OSError) as exc:
        print(f"init: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {', '.join(written)} (preset {args.proxy}).")
    print(next_steps(args, out))
    return 0


def next_steps(args: argparse.Namespace, out: Path) -> str:
    unit_dir = args.systemd or "/etc/systemd/system"
    return f"""
Next steps:
  1. Install for the service:  sudo install -D -m 0644 {out} /etc/llm-hec-sidecar/config.yaml
  2. Secrets as credentials (root-owned, 0600; the unit loads them with LoadCredential=):
       sudo install -m 0600 /dev/null /etc/llm-hec-sidecar/hec_token   # then write the token in it
       head -c 32 /dev/urandom | base64 | sudo tee /etc/llm-hec-sidecar/hash_key >/dev/null
  3. Log permissions: the service reads the proxy logs through their group (SupplementaryGroups=
     adm in the unit): make them group-readable (chmod 0640, chgrp adm), or change the group in
     a drop-in: sudo systemctl edit llm-hec-sidecar
  4. Check:  llm-hec-sidecar validate -c /etc/llm-hec-sidecar/config.yaml
             llm-hec-sidecar check -c /etc/llm-hec-sidecar/config.yaml   (live: HEC, logs, prices)
  5. The unit{"" if args.systemd else " (llm-hec-sidecar init --systemd " + unit_dir + ")"}:
       sudo cp {unit_dir}/{DEFAULT_FILE} /etc/default/llm-hec-sidecar
       sudo systemctl daemon-reload && sudo systemctl enable --now llm-hec-sidecar
       systemctl status llm-hec-sidecar; curl -s 127.0.0.1:9178/health
"""

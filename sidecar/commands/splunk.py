"""`llm-hec-sidecar splunk package | install | verify | report`: the Splunk app and cost reports.

- package: checks every search of `dashboards/llm_usage` offline, then builds the deterministic
  `llm_usage-<version>.tar.gz` (no `./` paths, no dotfiles, no local/, 0644 files).
- install: builds the package, then installs or upgrades it through splunkd's REST API
  (POST apps/local, filename=true, update=true). splunkd reads the package from a path on its
  own host (`--server-path`, e.g. a shared folder) or fetches it from a URL; by default the
  command serves the file once over HTTP on `--serve-on` (the address splunkd can reach).
- verify: a tstats search confirming that recent events arrive and the indexed fields exist.
- report daily|monthly: totals, by model, by API, by tenant, cache savings and top
  conversations as Markdown, or the chargeback CSV (one row per tenant, provider, model, API).

splunkd credentials come from the environment only (never the command line, which other users
can see): SPLUNK_URL (default https://127.0.0.1:8089), SPLUNK_TOKEN (an authentication token),
or SPLUNK_USERNAME and SPLUNK_PASSWORD; SPLUNK_VERIFY_TLS=false for a self-signed certificate.
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from sidecar.splunk import appfiles, package, report
from sidecar.splunk.client import SplunkError, Target, connect, install_app, search

DEFAULT_APP = Path(__file__).resolve().parents[2] / "dashboards" / "llm_usage"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="splunk_command", required=True)
    p = sub.add_parser("package", help="build the Splunk app tarball")
    _app_args(p)
    p = sub.add_parser("install", help="build and install the app through splunkd's REST API")
    _app_args(p)
    p.add_argument(
        "--server-path",
        default=None,
        help="copy the package into this folder, which splunkd reads at the same path",
    )
    p.add_argument(
        "--serve-on",
        default="127.0.0.1:0",
        help="HOST:PORT to serve the package on for splunkd to fetch (default 127.0.0.1:0)",
    )
    p = sub.add_parser("verify", help="check that recent events and the indexed fields arrive")
    p.add_argument("--index", default="llm")
    p.add_argument("--since", default="-15m", help="Splunk time (default -15m)")
    p = sub.add_parser("report", help="cost report from Splunk")
    p.add_argument("kind", choices=["daily", "monthly"])
    p.add_argument("--index", default="llm")
    p.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    p.add_argument("--date", default=None, help="YYYY-MM-DD (daily; default yesterday, UTC)")
    p.add_argument("--month", default=None, help="YYYY-MM (monthly; default last month)")


def _app_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app-dir", type=Path, default=DEFAULT_APP, help="the app folder")
    p.add_argument("--out-dir", type=Path, default=Path("dist"), help="where the tarball goes")


def target_from_env(env: dict[str, str] | None = None) -> Target:
    env = dict(os.environ if env is None else env)
    return Target(
        url=env.get("SPLUNK_URL", "https://127.0.0.1:8089"),
        username=env.get("SPLUNK_USERNAME"),
        password=env.get("SPLUNK_PASSWORD"),
        token=env.get("SPLUNK_TOKEN"),
        verify_tls=env.get("SPLUNK_VERIFY_TLS", "true").lower() not in {"0", "false", "no"},
    )


def build(app_dir: Path, out_dir: Path) -> package.Package:
    problems = appfiles.check_app(app_dir)
    if problems:
        raise package.PackageError(
            "searches fail the offline SPL check:\n  " + "\n  ".join(problems)
        )
    return package.build_package(app_dir, out_dir)


def run(args: argparse.Namespace) -> int:
    try:
        return _COMMANDS[args.splunk_command](args)
    except (package.PackageError, SplunkError, ValueError, OSError) as exc:
        print(f"splunk {args.splunk_command}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, package.PackageError | ValueError) else 1


def _package(args: argparse.Namespace) -> int:
    pkg = build(args.app_dir, args.out_dir)
    print(f"{pkg.path} ({pkg.app_id} {pkg.version} build {pkg.build}, {len(pkg.files)} files, "
          f"sha256 {pkg.sha256})")  # fmt: skip
    return 0


class _OneFile(http.server.BaseHTTPRequestHandler):
    path_to_serve: Path

    def do_GET(self) -> None:
        if self.path.rsplit("/", 1)[-1] != self.path_to_serve.name:
            self.send_error(404)
            return
        data = self.path_to_serve.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


def _install(args: argparse.Namespace) -> int:
    pkg = build(args.app_dir, args.out_dir)
    service = connect(target_from_env())
    if args.server_path:
        dest = Path(args.server_path) / pkg.path.name
        shutil.copyfile(pkg.path, dest)
        dest.chmod(0o644)
        content = install_app(service, str(dest), pkg.app_id)
    else:
        host, _, port = args.serve_on.rpartition(":")
        handler = type("_Handler", (_OneFile,), {"path_to_serve": pkg.path})
        server = http.server.ThreadingHTTPServer((host, int(port)), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://{host}:{server.server_address[1]}/{pkg.path.name}"
            content = install_app(service, url, pkg.app_id)
        finally:
            server.shutdown()
            server.server_close()
    installed = content.get("version")
    if installed != pkg.version:
        raise SplunkError(f"splunkd reports {pkg.app_id} {installed}, expected {pkg.version}")
    print(f"installed {pkg.app_id} {installed} on {target_from_env().url} (restart splunkd if "
          "it asks for one)")  # fmt: skip
    return 0


def _verify(args: argparse.Namespace) -> int:
    service = connect(target_from_env())
    rows = search(service, report.verify_search(args.index), args.since, "now")
    ok, lines = report.verify_verdict(rows[0] if rows else {}, args.since)
    print("\n".join(lines))
    return 0 if ok else 1


def _report(args: argparse.Namespace) -> int:
    today = datetime.now(UTC).date()
    p = report.period(args.kind, args.date if args.kind == "daily" else args.month, today)
    service = connect(target_from_env())
    if args.format == "csv":
        rows = search(service, report.chargeback_search(args.index), p.earliest, p.latest)
        sys.stdout.write(report.chargeback_csv(rows, p))
        return 0
    sections = {
        name: search(service, spl, p.earliest, p.latest)
        for name, spl in report.searches(args.index).items()
    }
    sys.stdout.write(report.markdown(sections, p, args.index))
    return 0


_COMMANDS = {"package": _package, "install": _install, "verify": _verify, "report": _report}

__all__ = ["add_arguments", "run", "target_from_env"]

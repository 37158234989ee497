"""nginx for the end-to-end tests: prerequisites, the shipped config rendered under a prefix,
and a running instance (start as a child, `-s reopen`, graceful stop).

The shipped `examples/nginx/nginx.conf` is copied with only its listen port, upstream addresses and
CA file changed (`render_config`); every replaced text must occur exactly once.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "examples" / "nginx"
INSTALL = "apt-get install -y nginx libnginx-mod-http-lua lua-cjson"
MODULES = "/usr/lib/nginx/modules"  # the absolute load_module paths of the shipped config
LEVELS = ("error", "crit", "alert", "emerg")  # error.log levels that fail the test


# ------------------------------------------------------------------ prerequisites
def _find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def _missing() -> list[str]:
    missing = []
    if _find_nginx() is None:
        missing.append("nginx")
    for mod in ("ndk_http_module.so", "ngx_http_lua_module.so"):
        if not os.path.exists(f"{MODULES}/{mod}"):
            missing.append(f"{MODULES}/{mod} (libnginx-mod-http-lua)")
    if not glob.glob("/usr/lib/*/lua/5.1/cjson.so") and not glob.glob("/usr/lib/lua/5.1/cjson.so"):
        missing.append("cjson.so (lua-cjson)")
    if shutil.which("openssl") is None:
        missing.append("openssl")
    try:
        pwd.getpwnam("www-data")  # the shipped config's `user`
    except KeyError:
        missing.append("user www-data")
    return missing


def require_nginx() -> str:
    missing = _missing()
    if missing:
        msg = f"nginx e2e test needs: {', '.join(missing)}; install with `{INSTALL}`"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {msg}", pytrace=False)
        pytest.skip(msg)
    return _find_nginx()  # type: ignore[return-value]


# ------------------------------------------------------------------ setup helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the three provider host names (nginx verifies it)."""
    cert, key = tmp / "upstream.crt", tmp / "upstream.key"
    san = "DNS:api.openai.com,DNS:api.anthropic.com,DNS:generativelanguage.googleapis.com"
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    args += ["-subj", "/CN=api.openai.com", "-addext", f"subjectAltName={san}"]
    args += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", *args],
        check=True,
        capture_output=True,
    )
    return cert, key


def render_config(prefix: Path, listen_port: int, upstream_port: int, ca_file: Path) -> None:
    """Copy the shipped config into `prefix`, changing only where it connects and listens.

    Everything else (modules, log formats, maps, headers, Lua phases, TLS settings) stays as
    shipped, so this tests the shipped file. Each target must occur exactly once: if the
    shipped file changes, this fails loudly instead of testing something else.
    """
    conf = (SHIPPED / "nginx.conf").read_text()
    up = f"127.0.0.1:{upstream_port}"
    replacements = [
        # the proxy listens on a free port instead of 8080
        ("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{listen_port};"),
        # the upstream blocks keep their names (so $proxy_host, Host, SNI and the logged
        # upstream_host stay the real provider names), only their server addresses point at
        # the fake upstream; also no DNS lookup is needed at start
        ("server api.openai.com:443;", f"server {up};"),
        ("server api.anthropic.com:443;", f"server {up};"),
        ("server generativelanguage.googleapis.com:443;", f"server {up};"),
        # nginx verifies the fake upstream's self-signed certificate instead of the system CAs
        (
            "proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;",
            f"proxy_ssl_trusted_certificate {ca_file};",
        ),
    ]
    for old, new in replacements:
        count = conf.count(old)
        assert count == 1, f"examples/nginx/nginx.conf: expected {old!r} once, found {count}"
        conf = conf.replace(old, new)
    (prefix / "nginx.conf").write_text(conf)
    shutil.copytree(SHIPPED / "lua", prefix / "lua")
    # as in examples/nginx/README.md
    (prefix / "logs" / "body").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    if os.geteuid() == 0:  # else nginx ignores `user` and the workers run as we do
        shutil.chown(prefix / "logs" / "body", user="www-data")


def wait_listening(proc: subprocess.Popen, port: int, prefix: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited with {proc.returncode}:\n{nginx_output(prefix)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port}:\n{nginx_output(prefix)}")


def nginx_output(prefix: Path) -> str:
    out = []
    for name in ("nginx.stderr", "logs/error.log"):
        p = prefix / name
        if p.exists():
            out.append(f"--- {name}\n{p.read_text(errors='replace')[-4000:]}")
    return "\n".join(out)


class RunningNginx:
    """`with RunningNginx(nginx, prefix, port):` nginx from `prefix/nginx.conf` as a child process
    (`daemon off`, so it is waited for), listening on `port`; stopped gracefully (SIGQUIT: the
    workers finish their requests and write every log line) on exit."""

    def __init__(self, nginx: str, prefix: Path, port: int) -> None:
        self.nginx, self.prefix, self.port = nginx, prefix, port
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> RunningNginx:
        with open(self.prefix / "nginx.stderr", "wb") as err:
            self.proc = subprocess.Popen(
                [self.nginx, "-p", f"{self.prefix}/", "-c", "nginx.conf", "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        wait_listening(self.proc, self.port, self.prefix)
        return self

    def reopen(self) -> None:
        """`nginx -s reopen`, as logrotate's postrotate does (the master reads logs/nginx.pid)."""
        subprocess.run(
            [self.nginx, "-p", f"{self.prefix}/", "-c", "nginx.conf", "-s", "reopen"],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

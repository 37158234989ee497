"""TLS settings of the HEC client: verification on by default, CA file, client certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from sidecar.config import Tls
from sidecar.sinks.hec.service import _ssl_setting


def test_verification_is_on_by_default_and_off_only_when_asked() -> None:
    ctx = _ssl_setting(Tls())
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert _ssl_setting(Tls(verify=False)) is False


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_ca_file_and_client_certificate_are_loaded(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = _ssl_setting(Tls(ca_file=str(cert), cert_file=str(cert), key_file=str(key)))
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED
    assert any(c.get("subject") == ((("commonName", "127.0.0.1"),),) for c in ctx.get_ca_certs())
    ctx = _ssl_setting(Tls(verify=False, cert_file=str(cert), key_file=str(key)))
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_NONE  # mTLS only
    with pytest.raises(ssl.SSLError):
        _ssl_setting(Tls(cert_file=str(cert), key_file=str(cert)))  # not a key

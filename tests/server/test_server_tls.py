"""HTTPS with --tls-cert-file/--tls-key-file (a self-signed certificate made at test time)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from server_fakes import DaemonFactory, chat

from llamasc.config.settings import check_tls, settings_from_sources
from llamasc.errors import ConfigError


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_serves_with_the_given_certificate(
    daemon_factory: DaemonFactory, cert: tuple[Path, Path]
) -> None:
    d = daemon_factory(tls_cert_file=str(cert[0]), tls_key_file=str(cert[1]))
    assert d.url.startswith("https://127.0.0.1:")
    trust = ssl.create_default_context(cafile=str(cert[0]))
    with httpx.Client(base_url=d.url, verify=trust, timeout=30) as c:
        assert c.get("/health").status_code == 200
        assert c.post("/v1/chat/completions", json=chat("m1")).status_code == 200
    with pytest.raises(httpx.ConnectError):  # an untrusted certificate is refused by clients
        httpx.get(d.url + "/health", timeout=10)
    plain = d.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/health", timeout=10)


@pytest.mark.parametrize("which", ["tls_cert_file", "tls_key_file"])
def test_both_or_neither(which: str, cert: tuple[Path, Path]) -> None:
    path = str(cert[0] if which == "tls_cert_file" else cert[1])
    settings = settings_from_sources(env={}, cli={which: path})
    with pytest.raises(ConfigError, match="go together"):
        check_tls(settings)


def test_unreadable_or_mismatched_files_are_one_line(
    cert: tuple[Path, Path], tmp_path: Path
) -> None:
    missing = settings_from_sources(
        env={}, cli={"tls_cert_file": str(tmp_path / "nope.pem"), "tls_key_file": str(cert[1])}
    )
    with pytest.raises(ConfigError, match="no such file"):
        check_tls(missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    bad = settings_from_sources(
        env={}, cli={"tls_cert_file": str(cert[0]), "tls_key_file": str(junk)}
    )
    with pytest.raises(ConfigError, match="cannot load"):
        check_tls(bad)


def test_clear_text_on_a_non_loopback_address_warns(cert: tuple[Path, Path]) -> None:
    open_bind = settings_from_sources(env={}, cli={"bind": "0.0.0.0:8402", "api_key": "k"})
    (warning,) = check_tls(open_bind)
    assert "clear text" in warning
    assert check_tls(settings_from_sources(env={}, cli={})) == []
    tls = settings_from_sources(
        env={},
        cli={"bind": "0.0.0.0:8402", "tls_cert_file": str(cert[0]), "tls_key_file": str(cert[1])},
    )
    assert check_tls(tls) == []

"""TLS on a real server: rediss:// with a CA, verification on by default, client
certificates (mutual TLS). Certificates are made for the test with openssl."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import MODES, call

import quantumorm
from cluster_support import free_ports
from quantumorm import BackendConnectionError, Document, StringField

pytestmark = pytest.mark.redis


class Secret(Document):
    name = StringField(indexed=True)

    class Meta:
        collection = "tls_secrets"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_server(tmp_path: Path) -> Any:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not on PATH")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "1", "-subj", "/CN=qorm test CA", cwd=tmp_path)
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}", cwd=tmp_path)
        (tmp_path / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile",
                f"{name}.ext", cwd=tmp_path)
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", "0", "--tls-port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
         "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
         "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "yes"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = {name: str(tmp_path / name) for name in
             ("ca.crt", "client.crt", "client.key")}
    probe = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=files["ca.crt"],
                        ssl_certfile=files["client.crt"], ssl_keyfile=files["client.key"],
                        socket_connect_timeout=0.5)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"rediss://127.0.0.1:{port}/0", files
    finally:
        probe.close()
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("mode", MODES)
async def test_models_over_mutual_tls(tls_server: Any, mode: str) -> None:
    url, files = tls_server
    quantumorm.create_connection(url=url, name="default", make_default=True,
                                 ssl_ca_certs=files["ca.crt"], ssl_certfile=files["client.crt"],
                                 ssl_keyfile=files["client.key"])
    try:
        await call(Secret(id="s", name="x"), "save", mode)
        assert [d.id for d in await call(Secret.objects.filter(name="x"), "all", mode)] == ["s"]
    finally:
        await quantumorm.aclose_all()
        quantumorm.close_all()


def test_an_unknown_server_certificate_is_refused_by_default(tls_server: Any) -> None:
    url, files = tls_server
    # no CA given: the server's certificate cannot be verified, and verification is on
    quantumorm.create_connection(url=url, name="default", make_default=True,
                                 ssl_certfile=files["client.crt"],
                                 ssl_keyfile=files["client.key"], connect_timeout=1)
    try:
        with pytest.raises(BackendConnectionError, match="(?i)certificate|ssl"):
            Secret.objects.count_sync()
    finally:
        quantumorm.close_all()
    # and a client without a certificate is refused by a server that asks for one
    quantumorm.create_connection(url=url, name="default", make_default=True,
                                 ssl_ca_certs=files["ca.crt"], connect_timeout=1)
    try:
        with pytest.raises(BackendConnectionError):
            Secret.objects.count_sync()
    finally:
        quantumorm.close_all()

"""rediss:// against a real TLS redis-server with a private CA."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ormcache_redis import ConfigError, RedisClient, RedisReplyError, RedisUnavailable
from ormcache_redis.testing import free_port


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: run `make install` (scripts/setup.sh)")
    tmp = tmp_path_factory.mktemp("tls")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=ormcache-test-ca",
        cwd=tmp,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=tmp,
    )
    (tmp / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=tmp,
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.pem",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "s3cret-pass",
        ],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        client = RedisClient(
            f"rediss://:s3cret-pass@localhost:{port}/0",
            tls_ca_file=tmp / "ca.pem",
            connect_timeout=0.5,
        )
        while True:
            try:
                client.ping()
                break
            except RedisUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port, tmp / "ca.pem"
    finally:
        process.kill()
        process.wait()


def test_tls_with_private_ca_and_password(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    client = RedisClient(f"rediss://:s3cret-pass@localhost:{port}/0", tls_ca_file=ca)
    assert client.execute("SET", "tls", b"ok") == "OK"
    assert client.execute("GET", "tls") == b"ok"
    assert "s3cret-pass" not in repr(client) and client.address.startswith("rediss://")


def test_untrusted_certificate_is_refused(tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    client = RedisClient(f"rediss://:s3cret-pass@localhost:{port}/0")
    with pytest.raises(RedisUnavailable, match="certificate"):
        client.execute("PING")


def test_wrong_password_is_an_error_without_the_password(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    client = RedisClient(f"rediss://:wrong-pass@localhost:{port}/0", tls_ca_file=ca)
    with pytest.raises((RedisUnavailable, RedisReplyError)) as info:
        client.execute("PING")
    assert "wrong-pass" not in str(info.value)


def test_tls_file_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_ca_file"):
        RedisClient("rediss://localhost:1/0", tls_ca_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="go together"):
        RedisClient("rediss://localhost:1/0", tls_cert_file=tmp_path / "c.pem")

"""Credentials never printed: every URL form through every output.

A table of Redis URL forms that hold a secret (``user:password@``, ``?pass=``,
``?password=``, percent-encoded values and names, several hosts, TLS,
malformed URLs) is tried against every place that shows a URL: ``redact_url``,
``check_redis_url``'s errors, ``RedisClient`` (repr, address, stats, the
errors of a failing connection, its log lines), the settings objects, and the
``ormcache-redis`` subcommands run as real processes against real servers,
one of them started with ``requirepass`` so the authenticating forms really
authenticate. One (form, output) pair is one try; a try leaks when what it
printed holds the secret, whole or in part. Every secret of the table begins
with ``Zq7`` and holds ``s3cret``, which nothing else prints, so a leak is
either of them in the output.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from ormcache_redis import RedisClient, _native, testing
from ormcache_redis.config import redact_url

PASSWORD = "Zq7-requirepass-s3cret"  # the server's requirepass (user "default")
ODOO_PASSWORD = "Zq7@odoo/s3cret&x"  # ACL user "odoo": needs percent-encoding in a URL
ENCODED = quote(ODOO_PASSWORD, safe="")
WEB_PASSWORD = "Zq7@web/s3cret"  # ACL user "web": fine unencoded in a query
MARKERS = ("zq7", "s3cret")
TLS_KEY = "/nonexistent/tls/client-key.pem"


def leaks(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in MARKERS)


@dataclass(frozen=True)
class Form:
    name: str
    url: str
    authenticates: bool = False  # PING answers with these credentials


@dataclass(frozen=True)
class Servers:
    port: int
    socket: str
    dead: int  # a port nobody listens on
    dead2: int


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    server = testing.RedisServer()
    socket_path = os.path.join(server.workdir, "r.sock")
    server.args += ["--requirepass", PASSWORD, "--unixsocket", socket_path]
    server.args += ["--unixsocketperm", "700"]
    server.start()
    admin = RedisClient(f"redis://:{quote(PASSWORD)}@127.0.0.1:{server.port}/0")
    for user, password in (("odoo", ODOO_PASSWORD), ("web", WEB_PASSWORD)):
        admin.execute("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    try:
        yield Servers(server.port, socket_path, testing.free_port(), testing.free_port())
    finally:
        server.close()


def forms(s: Servers) -> list[Form]:
    here = f"127.0.0.1:{s.port}"
    nowhere = f"127.0.0.1:{s.dead}"
    nowhere2 = f"127.0.0.1:{s.dead2}"
    sock = s.socket
    p = PASSWORD
    return [
        # What the client reads as credentials: these really authenticate.
        Form("redis://:pass@", f"redis://:{p}@{here}/0", True),
        Form("redis://user:pass@", f"redis://default:{p}@{here}/0", True),
        Form("redis://user:pass@ percent-encoded", f"redis://odoo:{ENCODED}@{here}/0", True),
        Form("valkey://:pass@", f"valkey://:{p}@{here}/0", True),
        Form("unix ?pass=", f"unix://{sock}?pass={p}", True),
        Form("unix ?user=&pass=&db=", f"unix://{sock}?user=default&pass={p}&db=1", True),
        Form("redis+unix ?pass=", f"redis+unix://{sock}?pass={p}", True),
        Form("unix ?pass= percent-encoded", f"unix://{sock}?user=odoo&pass={ENCODED}", True),
        Form("unix ?p%61ss= (encoded name)", f"unix://{sock}?p%61ss={p}", True),
        Form("unix ?pass= unencoded '@' '/'", f"unix://{sock}?user=web&pass={WEB_PASSWORD}", True),
        # Credential-looking parameters the client does not read: still secrets.
        Form("unix ?password=", f"unix://{sock}?password={p}"),
        Form("unix ?username=&password=", f"unix://{sock}?username=Zq7-user-s3cret&password={p}"),
        Form("unix ?PASS= (upper case)", f"unix://{sock}?PASS={p}"),
        Form("unix ?pass= unencoded '@' '/' '&'", f"unix://{sock}?user=odoo&pass={ODOO_PASSWORD}"),
        Form("unix ?user=a@b&pass=", f"unix://{sock}?user=a@b&pass={p}"),
        Form("unix ?pass=...#fragment", f"unix://{sock}?pass=Zq7#s3cret"),
        Form("redis ?password=", f"redis://{here}/0?password={p}"),
        Form("redis ?pass=", f"redis://{here}/0?pass={p}"),
        Form("redis ?username=&password=", f"redis://{here}/0?username=Zq7-s3cret&password={p}"),
        Form("redis ?sentinel_password=", f"redis://{here}/0?db=0&sentinel_password={p}"),
        # TLS.
        Form("rediss://:pass@", f"rediss://:{p}@localhost:{s.dead}/0"),
        Form("rediss #insecure", f"rediss://default:{p}@localhost:{s.dead}/0#insecure"),
        Form("rediss ?protocol=resp3", f"rediss://default:{p}@{nowhere}/0?protocol=resp3"),
        Form("valkeys ?password=", f"valkeys://{nowhere}/0?password={p}"),
        # Several hosts.
        Form("redis+sentinel user:pass@", f"redis+sentinel://default:{p}@{nowhere},{nowhere2}/m/0"),
        Form(
            "redis+sentinel ?sentinel_password=",
            f"redis+sentinel://:{p}@{nowhere},{nowhere2}/mymaster?sentinel_password={p}",
        ),
        Form("rediss+sentinel :pass@", f"rediss+sentinel://:{p}@{nowhere}/mymaster"),
        Form("redis+cluster :pass@ (not a cluster)", f"redis+cluster://:{p}@{here},{nowhere}"),
        Form("rediss+cluster user:pass@ ipv6", f"rediss+cluster://default:{p}@{nowhere},[::1]:1"),
        Form("redis+cluster percent-encoded", f"redis+cluster://odoo:{ENCODED}@{nowhere}"),
        Form("redis+cluster ?password=", f"redis+cluster://{nowhere},{nowhere2}?password={p}"),
        # Malformed, still holding a secret.
        Form("invalid port", f"redis://default:{p}@127.0.0.1:notaport/0"),
        Form("database not a number", f"redis://default:{p}@{here}/zero"),
        Form("no host", f"redis://default:{p}@"),
        Form("unknown scheme", f"http://default:{p}@{here}"),
        Form("upper-case scheme", f"REDIS://default:{p}@{here}/0"),
        Form("no scheme", f"default:{p}@{here}"),
        Form("'@' forgotten, password only", f"redis://:{p}"),
        Form("'@' forgotten, user and password", f"redis://default:{p}/0"),
        Form("unencoded '@' '/' '&' in the password", f"redis://odoo:{ODOO_PASSWORD}@{here}/0"),
        Form("unencoded '?' in the password", f"redis://default:Zq7?s3cret@{here}/0"),
        Form("unencoded '#' in the password", f"redis://default:Zq7#s3cret@{here}/0"),
        Form("sentinel without service", f"redis+sentinel://default:{p}@{nowhere}"),
        Form("sentinel with an empty host", f"redis+sentinel://default:{p}@{nowhere},,h/s"),
        Form("cluster with a database", f"redis+cluster://default:{p}@{nowhere}/2"),
        Form("cluster with an invalid host", f"redis+cluster://{nowhere},h#Zq7s3cret"),
        Form("unix ?pass= and a bad db", f"unix://{sock}?pass={p}&db=x"),
        Form("unix ?pass= and a bad protocol", f"unix://{sock}?pass={p}&protocol=9"),
        Form("unix '&' for '?'", f"unix://{sock}&pass={p}"),
    ]


# --------------------------------------------------------------------------- in-process outputs


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc} {exc!r} {exc.args!r}"


def in_process_outputs(form: Form, caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    url = form.url
    out = {"redact_url": redact_url(url)}
    try:
        _native.check_redis_url("ormcache_redis_url", url)
        out["check_redis_url"] = ""
    except _native.ConfigError as exc:
        out["check_redis_url"] = _error(exc)
    caplog.clear()
    try:
        client = RedisClient(
            url, connect_timeout=0.3, socket_timeout=0.3, failure_threshold=1, retry_max=1.0
        )
    except Exception as exc:
        out["RedisClient"] = _error(exc)
    else:
        shown = [repr(client), client.address, str(client), str(client.stats())]
        for call in (client.ping, lambda: client.execute("GET", "k")):
            try:
                shown.append(repr(call()))
            except Exception as exc:
                shown.append(_error(exc))
        out["RedisClient"] = " ".join(shown)
    out["RedisClient logs"] = caplog.text
    try:
        out["TLS files"] = repr(
            RedisClient(url, tls_key_file=TLS_KEY, tls_cert_file=TLS_KEY, connect_timeout=0.3)
        )
    except Exception as exc:
        out["TLS files"] = _error(exc)
    try:
        out["CacheSettings"] = repr(_native.CacheSettings.parse({"ormcache_redis_url": url}, []))
    except Exception as exc:
        out["CacheSettings"] = _error(exc)
    try:
        settings = _native.SessionSettings.parse(
            {"session_store": "redis", "session_store_url": url}
        )
        out["SessionSettings"] = repr(settings)
    except Exception as exc:
        out["SessionSettings"] = _error(exc)
    return out


# --------------------------------------------------------------------------- commands


def _command(name: str) -> list[str]:
    found = shutil.which(name, path=os.path.dirname(sys.executable))
    module = "ormcache_redis.cli" if name == "ormcache-redis" else "ormcache_redis.sessions.migrate"
    return [found] if found else [sys.executable, "-m", module]


def command_runs(form: Form, session_dir: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    cli = _command("ormcache-redis")
    secrets = ["--secret", "a-deployment-secret-of-32-bytes!", "--session-store-secret", "x" * 32]
    sessions = ["--session-dir", str(session_dir), *secrets]
    url = form.url
    return {
        "doctor": ([*cli, "doctor", url], {}),
        "stats --url": ([*cli, "stats", "--url", url], {}),
        "stats (REDIS_URL)": ([*cli, "stats"], {"REDIS_URL": url}),
        "flush --url": ([*cli, "flush", "--db", "db1", "--url", url], {}),
        "sessions to-files": ([*cli, "sessions", "to-files", "--url", url, *sessions], {}),
        "sessions to-redis": (
            [*cli, "sessions", "to-redis", "--url", url, *sessions, "--dry-run"],
            {},
        ),
        "ormcache-redis-sessions (SESSION_STORE_URL)": (
            [*_command("ormcache-redis-sessions"), "to-redis", *sessions, "--dry-run"],
            {"SESSION_STORE_URL": url},
        ),
    }


def run_command(argv: list[str], extra_env: dict[str, str]) -> str:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ORMCACHE_REDIS_", "SESSION_STORE", "REDIS_URL"))
    }
    env.update(extra_env)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


# --------------------------------------------------------------------------- the count


def count_leaks(outputs: dict[tuple[str, str], str], expected_tries: int) -> None:
    leaked = sorted(key for key, text in outputs.items() if leaks(text))
    print(f"\n{len(leaked)} leaks in {len(outputs)} tries")
    assert len(outputs) == expected_tries
    assert leaked == [], f"{len(leaked)} leaks in {len(outputs)} tries: {leaked}"


def test_no_form_leaks_its_secret_in_process(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    table = forms(servers)
    assert len({form.name for form in table}) == len(table)
    outputs = {
        (form.name, output): text
        for form in table
        for output, text in in_process_outputs(form, caplog).items()
    }
    count_leaks(outputs, len(table) * 7)


@pytest.mark.slow
def test_no_form_leaks_its_secret_in_commands(servers: Servers, tmp_path: Path) -> None:
    table = forms(servers)
    jobs = {}
    for number, form in enumerate(table):
        session_dir = tmp_path / f"sessions-{number}"
        session_dir.mkdir()
        for output, run in command_runs(form, session_dir).items():
            jobs[form.name, output] = run
    with ThreadPoolExecutor(max_workers=8) as pool:
        done = {key: pool.submit(run_command, *run) for key, run in jobs.items()}
        outputs = {key: future.result() for key, future in done.items()}
    count_leaks(outputs, len(table) * 7)
    # The table is meant as written: the authenticating forms reach the server.
    for form in table:
        doctor = outputs[form.name, "doctor"]
        assert ("answers PING" in doctor) == form.authenticates, (form.name, doctor)


# --------------------------------------------------------------------------- doctor


def doctor(url: str) -> tuple[int, str]:
    result = subprocess.run(
        [*_command("ormcache-redis"), "doctor", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def test_doctor_sees_the_password_of_a_unix_url(servers: Servers) -> None:
    code, out = doctor(f"unix://{servers.socket}?user=default&pass={PASSWORD}&db=1")
    assert code == 0, out
    assert "] authentication:" not in out
    assert f"unix://{servers.socket}?user=***&pass=***&db=1 answers PING" in out
    assert not leaks(out)


def test_doctor_names_credentials_the_client_does_not_read(
    servers: Servers, redis_url: str
) -> None:
    # The server wants a password: the one in ?password= is never sent.
    code, out = doctor(f"unix://{servers.socket}?password={PASSWORD}")
    assert code == 1, out
    lines = out.splitlines()
    assert lines[0].startswith(
        "[WARN] authentication: this client does not read the URL's ?password= and "
        "sends no password -> give the credentials as redis://USER:PASSWORD@host/0"
    ), out
    assert lines[1].startswith("[FAIL] reachability:") and "NOAUTH" in lines[1], out
    # A server without a password accepts it, and says so.
    code, out = doctor(redis_url + f"?username=odoo&password={PASSWORD}")
    assert "does not read the URL's ?username=, ?password= and sends no password" in out
    assert "[WARN] authentication: the client sends no password and Redis accepted it" in out
    assert not leaks(out)


# --------------------------------------------------------------------------- what stays


def test_tls_file_paths_stay_visible() -> None:
    for option in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        files = {option: TLS_KEY}
        if option != "tls_ca_file":
            files = {"tls_cert_file": TLS_KEY, "tls_key_file": TLS_KEY}
        with pytest.raises(_native.ConfigError) as caught:
            RedisClient(f"rediss://:{PASSWORD}@localhost:1/0", **files)
        assert TLS_KEY in str(caught.value) and not leaks(str(caught.value))
    url = "rediss://h/0?ssl_keyfile=/etc/k.pem&ssl_certfile=/etc/c.pem&ssl_password=Zq7s3cret"
    assert redact_url(url) == (
        "rediss://h/0?ssl_keyfile=/etc/k.pem&ssl_certfile=/etc/c.pem&ssl_password=***"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@h:1/0", "redis://***@h:1/0"),
        ("unix:///r.sock?user=u&pass=pw&db=1", "unix:///r.sock?user=***&pass=***&db=1"),
        (
            "rediss://:pw@h:1/0?protocol=resp3#insecure",
            "rediss://***@h:1/0?protocol=resp3#insecure",
        ),
        ("redis+sentinel://u:pw@a:1,[::1]:2/svc/3", "redis+sentinel://***@a:1,[::1]:2/svc/3"),
        ("redis://h/0?password=pw&db=0", "redis://h/0?password=***&db=0"),
        ("unix:///r.sock?note=a@b", "unix:///r.sock?note=a@b"),
    ],
)
def test_redaction_keeps_what_is_not_a_credential(url: str, shown: str) -> None:
    assert redact_url(url) == shown

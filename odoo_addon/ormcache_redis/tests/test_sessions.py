"""HTTP sessions in Redis, through Odoo's real HTTP stack (17.0, 18.0, 19.0).

Each class starts its own redis-server (so it can pause it) and installs a
Redis session store on ``odoo.http.root`` for its duration, whatever the
server's own ``session_store`` setting; the previous store comes back after.
Requests go through HttpCase's test server, which shares the test
transaction (so ``ir.config_parameter`` and device logs written here are
seen by the requests and vice versa).

Multi-process and restart behaviour with real ``odoo-bin`` processes is in
``tests/odoo/e2e_sessions.py`` at the repository root.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from typing import Any
from unittest.mock import patch

from odoo import http
from odoo.service import security
from odoo.tests import HttpCase, tagged

from ormcache_redis import Codec, RedisClient
from ormcache_redis.config import OptionSource
from ormcache_redis.odoo_support.deployment_secrets import DeploymentSecrets
from ormcache_redis.sessions.record_keys import seal_next_sid
from ormcache_redis.sessions.records import decode_record, encode_record
from ormcache_redis.sessions.redis_layout import address_of, field_of, hash_key
from ormcache_redis.sessions.store import RedisSessionStore
from ormcache_redis.sessions.store_errors import SessionStoreUnavailable
from ormcache_redis.sessions.versions import rules_for
from ormcache_redis.testing import RedisServer

from .. import session_store as session_store_module
from ..database_secrets import read_database_secret
from ..odoo_version import ODOO

ODOO_MAJOR = ODOO.major
PREFIX = "test:odoo-session:"
RECORD_FORMAT = rules_for(ODOO_MAJOR).record_format


def make_store(url: str, **options: Any) -> RedisSessionStore:
    """A store as the addon installs it: records keyed by each database's
    own database.secret, read with SQL."""
    client = RedisClient(url, socket_timeout=0.3, connect_timeout=0.3, retry_max=1.0)
    return RedisSessionStore(
        client,
        session_class=http.Session,
        odoo_major=ODOO_MAJOR,
        compute_session_token=security.compute_session_token,
        record_secret_for=DeploymentSecrets(None, read_database_secret).for_database,
        lifetime=session_store_module._odoo_session_lifetime,
        prefix=PREFIX,
        **options,
    )


class SessionStoreSwap:
    """Install a store on ``odoo.http.root`` and put the previous one back."""

    def __init__(self) -> None:
        self.descriptor = http.Application.__dict__["session_store"]
        self.cached = vars(http.root).get("session_store")

    def install(self, store: RedisSessionStore) -> None:
        session_store_module._replace_application_session_store(http, store)

    def restore(self) -> None:
        http.Application.session_store = self.descriptor
        vars(http.root).pop("session_store", None)
        if self.cached is not None:
            vars(http.root)["session_store"] = self.cached


def command_calls(client: RedisClient, command: str) -> int:
    info = client.execute("INFO", "commandstats")
    text = info.decode() if isinstance(info, bytes) else info
    for line in text.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@tagged("post_install", "-at_install", "ormcache_redis", "ormcache_redis_sessions")
class TestRedisSessions(HttpCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.redis = RedisServer().start()
        cls.addClassCleanup(cls.redis.stop)
        cls.raw = RedisClient(cls.redis.url)
        cls.swap = SessionStoreSwap()
        cls.addClassCleanup(cls.swap.restore)
        cls.store = make_store(cls.redis.url)
        cls.swap.install(cls.store)
        cls.admin = cls.env.ref("base.user_admin")

    def setUp(self) -> None:
        super().setUp()
        self.raw.execute("FLUSHALL")

    # ------------------------------------------------------------------ helpers

    def _forget_cookie(self) -> None:
        jar = self.opener.cookies
        for cookie in [c for c in jar if c.name == "session_id"]:
            jar.clear(cookie.domain, cookie.path, cookie.name)

    def request(
        self, path: str, sid: str | None = None, params: dict[str, Any] | None = None
    ) -> tuple[Any, str | None]:
        """One request as a browser holding ``sid``: JSON-RPC when ``params``
        is given, else GET. Returns the response and the cookie the browser
        holds afterwards."""
        self._forget_cookie()
        cookies = {"session_id": sid} if sid else {}
        url = self.base_url() + path
        if params is None:
            response = self.opener.get(url, cookies=cookies, allow_redirects=False, timeout=30)
        else:
            body = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": params}
            response = self.opener.post(url, json=body, cookies=cookies, timeout=30)
        new_sid = response.cookies.get("session_id")
        self._forget_cookie()
        return response, new_sid or sid

    def login(self) -> str:
        response, sid = self.request(
            "/web/session/authenticate",
            params={"db": self.env.cr.dbname, "login": "admin", "password": "admin"},
        )
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json()["result"]["uid"], self.admin.id, response.text)
        self.assertTrue(sid and self.store.is_valid_key(sid))
        return sid

    def session_uid(self, sid: str) -> int | None:
        """The uid the server sees for this cookie (None: not logged in)."""
        response, _ = self.request("/web/session/get_session_info", sid, params={})
        self.assertEqual(response.status_code, 200, response.text)
        return response.json().get("result", {}).get("uid")

    def stored(self, sid: str) -> bool:
        return bool(self.raw.execute("HEXISTS", hash_key(PREFIX, sid[:42]), field_of(sid)))

    def database_secret(self) -> str:
        return self.env["ir.config_parameter"].sudo().get_param("database.secret")

    def secret_for(self, secret: str) -> Any:
        return lambda db: secret if db == self.env.cr.dbname else None

    def read_record(self, sid: str) -> dict[str, Any]:
        key, field = address_of(PREFIX, sid)
        return decode_record(
            self.raw.execute("HGET", key, field), key=key, field=field, sid=sid,
            fmt=RECORD_FORMAT, secret_for=self.secret_for(self.database_secret()), codec=Codec(),
        ).data  # fmt: skip

    def forged_record(self, sid: str, data: dict[str, Any], secret: str) -> bytes:
        """What a Redis writer holding ``secret`` can put at this session's address."""
        return encode_record(
            data, sid, prefix=PREFIX, fmt=RECORD_FORMAT, ttl=3600,
            secret_for=self.secret_for(secret), codec=Codec(),
        )  # fmt: skip

    # ------------------------------------------------------------------ tests

    def test_login_lives_in_redis_and_survives_a_restart(self) -> None:
        sid = self.login()
        self.assertTrue(self.stored(sid))
        self.assertEqual(self.session_uid(sid), self.admin.id)
        keys = self.raw.execute("KEYS", "*")
        self.assertTrue(keys)
        for key in keys:
            self.assertTrue(key.startswith(PREFIX.encode()))
            self.assertNotIn(sid[:42].encode(), key)
        # A restarted server is a new process: new store, new connections.
        fresh = make_store(self.redis.url)
        self.swap.install(fresh)
        try:
            self.assertIs(http.root.session_store, fresh)
            self.assertEqual(self.session_uid(sid), self.admin.id)
        finally:
            self.swap.install(self.store)

    def test_every_session_key_has_a_ttl(self) -> None:
        sid = self.login()
        key = hash_key(PREFIX, sid[:42])
        ttl = self.raw.execute("TTL", key)
        lifetime = http.get_session_max_inactivity(self.env)
        self.assertTrue(lifetime - 30 <= ttl <= lifetime, (ttl, lifetime))

    def test_anonymous_login_page_writes_nothing(self) -> None:
        response, sid = self.request("/web/login")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.raw.execute("DBSIZE"), 0)
        response, _ = self.request("/web/login", sid)
        self.assertEqual(self.raw.execute("DBSIZE"), 0)

    def test_logout_removes_the_session(self) -> None:
        sid = self.login()
        response, new_sid = self.request("/web/session/logout", sid)
        self.assertIn(response.status_code, (302, 303))
        self.assertNotEqual(new_sid, sid)
        self.assertFalse(self.stored(sid))
        self.assertIsNone(self.session_uid(sid))
        self.assertIsNone(self.session_uid(new_sid))

    def test_another_process_reads_the_session(self) -> None:
        sid = self.login()
        script = textwrap.dedent(
            f"""
            from ormcache_redis import Codec, RedisClient
            from ormcache_redis.sessions.records import decode_record
            from ormcache_redis.sessions.redis_layout import address_of
            key, field = address_of({PREFIX!r}, {sid!r})
            raw = RedisClient({self.redis.url!r}).execute("HGET", key, field)
            fmt = {RECORD_FORMAT!r}
            secret = {self.database_secret()!r}
            print(decode_record(raw, key=key, field=field, sid={sid!r}, fmt=fmt,
                                secret_for=lambda db: secret, codec=Codec()).data["uid"])
            """
        )
        output = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        self.assertEqual(output.strip(), str(self.admin.id))

    def test_invalid_cookie_never_reaches_redis(self) -> None:
        before = command_calls(self.raw, "eval"), command_calls(self.raw, "hget")
        for cookie in ("garbage", "../" * 28, "A" * 83):
            response, _ = self.request("/web/login", cookie)
            self.assertEqual(response.status_code, 200)
        self.assertEqual((command_calls(self.raw, "eval"), command_calls(self.raw, "hget")), before)

    def test_garbage_in_redis_is_a_new_session(self) -> None:
        sid = self.login()
        self.raw.execute("HSET", hash_key(PREFIX, sid[:42]), field_of(sid), b"\x80garbage")
        self.assertIsNone(self.session_uid(sid))

    def test_records_are_authenticated_with_the_database_secret(self) -> None:
        sid = self.login()
        record = self.raw.execute("HGET", *address_of(PREFIX, sid))
        self.assertEqual(record[:7], b"OCRS\x02" + RECORD_FORMAT + b"D")
        self.assertIn(self.env.cr.dbname.encode(), record[:80])
        self.assertEqual(self.read_record(sid)["uid"], self.admin.id)

    def test_a_rewritten_uid_is_not_honored(self) -> None:
        """A Redis writer changes whom the session belongs to: without the
        database's secret, with a guessed one, or by editing the payload in
        place. Each time the cookie is no longer logged in, and nobody is
        logged in as the other user."""
        sid = self.login()
        other = self.env.ref("base.user_root").id
        address = address_of(PREFIX, sid)
        record = self.raw.execute("HGET", *address)
        if ODOO_MAJOR >= 18:
            edited = record.replace(b'"uid":%d' % self.admin.id, b'"uid":%d' % other)
        else:  # the codec's payload: change a byte before the 32-byte tag
            edited = record[:-40] + bytes([record[-40] ^ 1]) + record[-39:]
        self.assertNotEqual(edited, record)
        forgeries = {
            "tagged with a guessed secret": self.forged_record(
                sid, {**self.read_record(sid), "uid": other}, "a secret guessed by the attacker"
            ),
            "edited in place": edited,
        }
        for name, forged in forgeries.items():
            self.raw.execute("HSET", *address, record)
            self.assertEqual(self.session_uid(sid), self.admin.id)
            forged_before = self.store.refused.total["forged"]
            self.raw.execute("HSET", *address, forged)
            response, _ = self.request("/web/session/get_session_info", sid, params={})
            self.assertEqual(response.status_code, 200, response.text)
            self.assertIsNone(response.json().get("result", {}).get("uid"), name)
            self.assertEqual(self.store.refused.total["forged"], forged_before + 1, name)

    def test_expired_session_is_gone(self) -> None:
        self.env["ir.config_parameter"].sudo().set_param("sessions.max_inactivity_seconds", "2")
        self.env.flush_all()
        sid = self.login()
        self.assertLessEqual(self.raw.execute("TTL", hash_key(PREFIX, sid[:42])), 2)
        time.sleep(2.5)
        self.assertFalse(self.stored(sid))
        self.assertIsNone(self.session_uid(sid))

    def test_vacuum_cron_runs(self) -> None:
        sid = self.login()
        self.env["ir.http"]._gc_sessions()
        self.assertTrue(self.stored(sid))
        self.assertEqual(self.session_uid(sid), self.admin.id)

    def test_redis_outage_is_a_503_and_service_resumes(self) -> None:
        sid = self.login()
        self.raw.execute("CLIENT", "PAUSE", 1500)  # Redis stops answering
        paused_at = time.monotonic()
        with self.assertLogs("odoo.http", logging.ERROR) as logs:
            response, cookie = self.request("/web/session/get_session_info", sid, params={})
        self.assertEqual(response.status_code, 503)
        self.assertNotIn("session_id", response.cookies)  # no fresh anonymous session
        self.assertEqual(cookie, sid)
        self.assertLess(time.monotonic() - paused_at, 1.4)  # failed fast, did not hang
        self.assertEqual(len(logs.records), 1)
        self.assertIn("Redis", logs.output[0])
        self.assertNotIn(sid[:20], "\n".join(logs.output))
        # Redis answers again: the next requests work, nobody was logged out.
        time.sleep(max(0.0, paused_at + 1.6 - time.monotonic()))
        deadline = time.monotonic() + 15
        while True:
            response, _ = self.request("/web/session/get_session_info", sid, params={})
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json()["result"]["uid"], self.admin.id)

    def test_store_raises_503_rather_than_a_new_session(self) -> None:
        sid = self.login()
        self.raw.execute("CLIENT", "PAUSE", 1000)
        try:
            with self.assertRaises(SessionStoreUnavailable):
                self.store.get(sid)
        finally:
            time.sleep(1.1)

    if ODOO_MAJOR >= 18:

        def test_device_revocation_removes_the_session(self) -> None:
            sid = self.login()
            self.assertEqual(self.session_uid(sid), self.admin.id)  # logs the device
            self.env.invalidate_all()
            device = self.env["res.device"].sudo().search([("session_identifier", "=", sid[:42])])
            self.assertTrue(device, "the request did not log a device")
            device._revoke()
            self.assertFalse(self.stored(sid))
            self.assertIsNone(self.session_uid(sid))

        def test_autovacuum_marks_devices_without_session_revoked(self) -> None:
            live_sid = self.login()
            self.assertEqual(self.session_uid(live_sid), self.admin.id)
            gone_sid = self.login()
            self.assertEqual(self.session_uid(gone_sid), self.admin.id)
            self.store.delete(self.store.get(gone_sid))
            self.env.flush_all()
            self.env.cr.execute(
                "UPDATE res_device_log SET last_activity = now() - interval '30 days' "
                "WHERE session_identifier IN %s",
                [(live_sid[:42], gone_sid[:42])],
            )
            self.env.invalidate_all()
            logs = self.env["res.device.log"].sudo()
            # The cron commits after marking devices; a test transaction cannot.
            with patch.object(self.env.cr, "commit", lambda: None):
                logs._ResDeviceLog__update_revoked()
                self.env["ir.http"]._gc_sessions()
            self.env.invalidate_all()
            revoked = {
                log.session_identifier: log.revoked
                for log in logs.search(
                    [("session_identifier", "in", [live_sid[:42], gone_sid[:42]])]
                )
            }
            self.assertEqual(revoked, {live_sid[:42]: False, gone_sid[:42]: True})

    if ODOO_MAJOR >= 19:

        def _age_session(self, sid: str, seconds: float) -> None:
            session = self.store.get(sid)
            session["create_time"] = time.time() - seconds
            self.store.save(session)

        def test_soft_rotation_lets_the_old_cookie_follow(self) -> None:
            sid = self.login()
            self._age_session(sid, http.SESSION_ROTATION_INTERVAL + 60)
            response, new_sid = self.request("/web/session/get_session_info", sid, params={})
            self.assertEqual(response.json()["result"]["uid"], self.admin.id)
            self.assertNotEqual(new_sid, sid)
            self.assertEqual(new_sid[:42], sid[:42])
            # A request still sending the old cookie (sent before the rotation
            # reached the browser) is served, and told the new cookie.
            response, followed = self.request("/web/session/get_session_info", sid, params={})
            self.assertEqual(response.json()["result"]["uid"], self.admin.id)
            self.assertEqual(followed, new_sid)
            self.assertEqual(self.session_uid(new_sid), self.admin.id)
            self.assertEqual(self.raw.execute("HLEN", hash_key(PREFIX, sid[:42])), 2)

        def test_an_injected_next_sid_is_not_followed(self) -> None:
            """Soft rotation follows ``next_sid``: a planted one would move the
            victim to a session id the attacker knows. Planted without the
            database's secret the record is refused; planted even with it, the
            next_sid does not open (sealed under the victim's own id)."""
            attacker_sid = self.login()
            guessed = "a secret guessed by the attacker"
            for secret in (guessed, self.database_secret()):
                sid = self.login()
                self._age_session(sid, http.SESSION_ROTATION_INTERVAL + 60)
                # The attacker does not know the victim's id: the best they can
                # plant is a next_sid sealed under an id they know (their own).
                target = {"next_sid": sid[:42] + attacker_sid[42:]}
                planted = {**self.read_record(sid), "deletion_time": time.time() + 100,
                           "next_sid": seal_next_sid(target, attacker_sid)["next_sid"]}  # fmt: skip
                self.raw.execute(
                    "HSET", *address_of(PREFIX, sid), self.forged_record(sid, planted, secret)
                )
                response, cookie = self.request("/web/session/get_session_info", sid, params={})
                self.assertEqual(response.status_code, 200, response.text)
                self.assertNotEqual(cookie[42:], attacker_sid[42:])
                uid = response.json().get("result", {}).get("uid")
                if secret == guessed:
                    self.assertIsNone(uid)  # refused: a new session, logged out
                else:
                    # Read, but the planted next_sid was dropped: a fresh rotation.
                    self.assertEqual(uid, self.admin.id)
                    self.assertNotEqual(cookie, sid)
                    self.assertEqual(self.read_record(sid)["next_sid"], cookie)
            self.assertEqual(self.session_uid(attacker_sid), self.admin.id)

        def test_rotated_away_session_is_dropped_after_the_deletion_timer(self) -> None:
            sid = self.login()
            self._age_session(sid, http.SESSION_ROTATION_INTERVAL + 60)
            with patch.object(self.store, "deletion_timer", 1):
                _, new_sid = self.request("/web/session/get_session_info", sid, params={})
                self.assertNotEqual(new_sid, sid)
                time.sleep(1.2)
                self.assertEqual(self.session_uid(new_sid), self.admin.id)  # runs the gc
            self.assertFalse(self.stored(sid))
            self.assertTrue(self.stored(new_sid))
            self.assertIsNone(self.session_uid(sid))


@tagged("post_install", "-at_install", "ormcache_redis", "ormcache_redis_sessions")
class TestSessionStoreInstall(HttpCase):
    """``install_session_store`` as the post_load hook calls it."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.redis = RedisServer().start()
        cls.addClassCleanup(cls.redis.stop)
        cls.swap = SessionStoreSwap()
        cls.addClassCleanup(cls.swap.restore)

    def test_without_options_odoo_keeps_its_store(self) -> None:
        before = http.root.session_store
        self.assertIsNone(session_store_module.install_session_store(OptionSource(None, {})))
        self.assertIs(http.root.session_store, before)

    def test_options_install_the_redis_store_for_good(self) -> None:
        environ = {
            "SESSION_STORE": "redis",
            "SESSION_STORE_URL": self.redis.url,
            "SESSION_STORE_PREFIX": PREFIX,
        }
        original = type(http.Application.__dict__["session_store"])
        store = session_store_module.install_session_store(OptionSource(None, environ))
        self.assertIsInstance(store, RedisSessionStore)
        self.assertIs(http.root.session_store, store)
        # Same descriptor kind as Odoo's (lazy_property on 17/18,
        # functools.cached_property on 19), so a reset rebuilds our store.
        self.assertIs(type(http.Application.__dict__["session_store"]), original)
        del http.root.session_store
        self.assertIs(http.root.session_store, store)
        self.assertEqual(store.prefix, PREFIX)
        self.assertIs(store.session_class, http.Session)
        # Keys it generates are keys Odoo accepts, and the other way round.
        odoo_store = http.FilesystemSessionStore("/nonexistent", session_class=http.Session)
        self.assertTrue(odoo_store.is_valid_key(store.generate_key()))
        self.assertTrue(store.is_valid_key(odoo_store.generate_key()))
        # And HTTP requests use it: a login lands in this Redis.
        response = self.opener.post(
            self.base_url() + "/web/session/authenticate",
            json={"jsonrpc": "2.0", "method": "call", "id": 1,
                  "params": {"db": self.env.cr.dbname, "login": "admin", "password": "admin"}},
            timeout=30,
        )  # fmt: skip
        self.assertEqual(response.json()["result"]["uid"], self.env.ref("base.user_admin").id)
        self.assertEqual(RedisClient(self.redis.url).execute("DBSIZE"), 1)
        self.assertTrue(json.dumps(response.json()))

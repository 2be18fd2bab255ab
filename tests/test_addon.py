"""The Odoo addon's logic that needs no Odoo (``ormcache_redis.odoo_support``):
options, namespaces, the gate, units of work, method clears, value types.

Tests that talk to Redis start their own redis-server on a free port.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import pytest

from ormcache_redis._native import (
    Codec,
    EncodeError,
    RedisClient,
    TwoTierCache,
    UnitOfWork,
    canonical_key,
    qualified_name,
)
from ormcache_redis.config import ConfigError, OptionSource
from ormcache_redis.odoo_support import deployment_secrets, namespaces, shared_tier, value_types
from ormcache_redis.odoo_support.settings import load_settings, looks_secret
from ormcache_redis.testing import RedisServer

ADDON_PATH = Path(__file__).parent.parent / "odoo_addon" / "ormcache_redis"

# Odoo 19's tables (17 has no stable/groups; the logic is the same).
REGISTRY_CACHES = {
    "default": 8192,
    "assets": 512,
    "stable": 1024,
    "templates": 1024,
    "routing": 1024,
    "routing.rewrites": 8192,
    "templates.cached_values": 2048,
    "groups": 64,
}
CACHES_BY_KEY = {
    "default": ("default", "templates.cached_values"),
    "assets": ("assets", "templates.cached_values"),
    "stable": ("stable", "default", "templates.cached_values"),
    "templates": ("templates", "templates.cached_values"),
    "routing": ("routing", "routing.rewrites", "templates.cached_values"),
    "groups": ("groups", "templates", "templates.cached_values"),
}


def options(**values: str) -> OptionSource:
    return OptionSource(values.get, environ={})


# --------------------------------------------------------------------------- redis


@pytest.fixture(scope="module")
def redis_url():
    try:
        server = RedisServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    with server:
        yield server.url


# --------------------------------------------------------------------------- settings


def test_defaults_without_any_option():
    settings = load_settings(options(), REGISTRY_CACHES)
    assert settings.url is None and not settings.enabled
    assert settings.expire == 3600
    assert settings.prefix == "ormcache:"
    assert settings.shared_caches == ["default", "stable", "assets", "templates", "groups"]
    assert (settings.socket_timeout, settings.connect_timeout) == (0.25, 0.5)
    assert settings.write_queue_bytes == 64 * 1024 * 1024
    assert settings.native_lookup
    for secret in (
        "res.users.check",
        "res.users._check_uid_passwd",
        "res.users._compute_session_token",
    ):
        assert secret in settings.local_methods


def test_config_file_wins_over_environment_which_is_the_fallback():
    source = OptionSource(
        {"ormcache_redis_expire": "60"}.get,
        environ={"ORMCACHE_REDIS_EXPIRE": "90", "ORMCACHE_REDIS_URL": "redis://h:1/2"},
    )
    settings = load_settings(source, REGISTRY_CACHES)
    assert settings.expire == 60
    assert settings.url == "redis://h:1/2"


@pytest.mark.parametrize(("value", "expected"), [("False", False), ("0", False), ("True", True)])
def test_native_lookup_option(value, expected):
    settings = load_settings(options(ormcache_redis_native_lookup=value), REGISTRY_CACHES)
    assert settings.native_lookup is expected


def test_local_methods_option_extends_the_secret_list():
    settings = load_settings(
        options(ormcache_redis_local_methods="my.model._secret, x.y.Z.m"), REGISTRY_CACHES
    )
    assert "res.users._compute_session_token" in settings.local_methods
    assert "my.model._secret" in settings.local_methods
    assert "x.y.Z.m" in settings.local_methods


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("ormcache_redis_url", "http://localhost:6379"),
        ("ormcache_redis_url", "redis://localhost:notaport"),
        ("ormcache_redis_expire", "soon"),
        ("ormcache_redis_expire", "0"),
        ("ormcache_redis_prefix", "has space"),
        ("ormcache_redis_shared_caches", "default,nosuchcache"),
        ("ormcache_redis_socket_timeout", "-1"),
        ("ormcache_redis_connect_timeout", "nan"),
        ("ormcache_redis_write_queue", "many"),
        ("ormcache_redis_write_queue_mb", "0"),
        ("ormcache_redis_native_lookup", "sometimes"),
        ("ormcache_redis_secret", "too-short"),
    ],
)
def test_bad_value_is_one_sentence_naming_the_option(option, value):
    with pytest.raises(ConfigError) as raised:
        load_settings(options(**{option: value}), REGISTRY_CACHES)
        deployment_secrets.configured_secret(options(**{option: value}))
    message = str(raised.value)
    assert option in message
    assert "\n" not in message and message.endswith(".")


def test_shared_caches_are_checked_against_this_odoo():
    odoo17 = {name: n for name, n in REGISTRY_CACHES.items() if name not in ("stable", "groups")}
    assert load_settings(options(), odoo17).shared_caches == ["default", "assets", "templates"]
    with pytest.raises(ConfigError, match="ormcache_redis_shared_caches"):
        load_settings(options(ormcache_redis_shared_caches="stable"), odoo17)
    settings = load_settings(options(ormcache_redis_shared_caches="default,assets"), odoo17)
    assert settings.shared_caches == ["default", "assets"]


# --------------------------------------------------------------------------- names


def test_namespace_holds_db_registry_cache_and_generation():
    namespace = namespaces.build_namespace("prod", 12, "default", (40, 7))
    assert namespace == b"prod:r12:default:g40.7"
    others = {
        namespaces.build_namespace("prod2", 12, "default", (40, 7)),
        namespaces.build_namespace("prod", 13, "default", (40, 7)),
        namespaces.build_namespace("prod", 12, "stable", (40, 7)),
        namespaces.build_namespace("prod", 12, "default", (41, 7)),
        namespaces.build_namespace("prod", 12, "default", (40, 8)),
    }
    assert namespace not in others and len(others) == 5


def test_signal_sources_follow_the_cascade():
    sources = namespaces.signal_sources(CACHES_BY_KEY)
    assert sources["default"] == ("default", "stable")
    assert sources["stable"] == ("stable",)
    assert sources["templates.cached_values"] == tuple(CACHES_BY_KEY)


def test_looks_secret():
    assert looks_secret(["uid", "passwd"], [])
    assert looks_secret(["sid"], [])
    assert looks_secret([], ["api_key"])
    assert looks_secret(["self.env.context.get('access_token')"], [])
    assert not looks_secret(["key"], ["key"])
    assert not looks_secret(["model_name", "self.env.uid", "frozenset(groups)"], [])


def test_qualified_name_of_function_and_classmethod():
    class Users:
        def check(self):
            pass

        @classmethod
        def klass(cls):
            pass

    assert qualified_name(Users.check).endswith(
        "test_qualified_name_of_function_and_classmethod.<locals>.Users.check"
    )
    assert qualified_name(Users.klass).endswith("Users.klass")


# --------------------------------------------------------------------------- value types


class FakeFrozendict(dict):
    pass


class FakeMarkup(str):
    pass


class FakeLangData(dict):
    pass


def test_value_types_come_back_as_themselves():
    codec = Codec()
    tags = value_types.register_value_types(
        codec, frozendict=FakeFrozendict, markup=FakeMarkup, lang_data=FakeLangData
    )
    assert "odoo.frozendict" in tags and "markupsafe.Markup" in tags
    value = FakeFrozendict(
        a=FakeMarkup("<b>x</b>"), b=(1, 2), c=FakeLangData(code="en_US", active=True)
    )
    back = codec.loads(codec.dumps(value))
    assert type(back) is FakeFrozendict and back == value
    assert type(back["a"]) is FakeMarkup
    assert type(back["c"]) is FakeLangData


class FakeOrderedSet:
    """Odoo's OrderedSet: a set that keeps insertion order."""

    def __init__(self, elems=()):
        self._map = dict.fromkeys(elems)

    def __iter__(self):
        return iter(self._map)

    def __eq__(self, other):
        return isinstance(other, FakeOrderedSet) and list(self) == list(other)


def test_ordered_sets_keep_their_order_and_type():
    codec = Codec()
    value_types.register_value_types(codec, ordered_set=FakeOrderedSet)
    value = FakeOrderedSet(["stock", "sale", "account"])
    back = codec.loads(codec.dumps(value))
    assert type(back) is FakeOrderedSet and list(back) == ["stock", "sale", "account"]


class FakeModel:
    """Odoo's BaseModel as far as cache keys go: equal by model and ids."""

    def __init__(self, name, ids):
        self._name, self._ids = name, tuple(ids)

    def __eq__(self, other):
        return self._name == other._name and set(self._ids) == set(other._ids)

    def __hash__(self):
        return hash((self._name, frozenset(self._ids)))


class FakeNewId:
    pass


def test_recordsets_in_keys_are_keyed_as_odoo_compares_them():
    value_types.register_recordset_keys(FakeModel)

    def canonical(*records):
        return canonical_key(("res.partner", "m", *records))

    company = canonical(FakeModel("res.company", [1]))
    assert canonical(FakeModel("res.company", (1, 1))) == company
    assert canonical(FakeModel("res.company", [2])) != company
    assert canonical(FakeModel("res.users", [1])) != company
    assert canonical(FakeModel("res.company", [3, 2])) == canonical(
        FakeModel("res.company", [2, 3])
    )
    assert canonical(("res.company", (1,))) != company  # not a plain tuple's encoding
    with pytest.raises(EncodeError, match=r"new res\.company records"):
        canonical(FakeModel("res.company", [FakeNewId()]))


def test_defaultdict_only_with_a_safe_factory():
    codec = Codec()
    value_types.register_value_types(codec)
    value = defaultdict(list, {"a": [1]})
    back = codec.loads(codec.dumps(value))
    assert type(back) is defaultdict and back.default_factory is list and back == value
    back["new"].append(1)  # the factory works
    plain = codec.loads(codec.dumps(defaultdict(None, {1: 2})))
    assert plain.default_factory is None and plain == {1: 2}
    with pytest.raises((TypeError, ValueError)):
        codec.dumps(defaultdict(lambda: 42))


# --------------------------------------------------------------------------- the tier


class Invalidation(threading.local):
    def __init__(self):
        self.names = set()


def make_tier(client=None, shared=("default", "stable", "assets"), testing=None):
    codec = Codec()
    caches = {
        name: TwoTierCache(
            name,
            size,
            client=client if name in shared else None,
            codec=codec,
            prefix="t:",
            secret="addon-test-secret",
        )
        for name, size in REGISTRY_CACHES.items()
    }
    flags = Invalidation()
    tier = shared_tier.SharedTier(
        db_name="db1",
        caches=caches,
        caches_by_key=CACHES_BY_KEY,
        shared_caches=shared if client is not None else (),
        invalidated_names=lambda: flags.names,
        client=client,
        prefix="t:",
        testing=testing,
    )
    return tier, caches, flags


SEQUENCES = {"default": 5, "assets": 1, "stable": 9, "templates": 1, "routing": 1, "groups": 1}


def test_nothing_is_shared_until_ready_and_numbers_adopted(redis_url):
    tier, caches, _flags = make_tier(RedisClient(redis_url))
    assert not caches["default"].shared
    tier.adopt(3, SEQUENCES)
    assert not caches["default"].shared  # registry still loading
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    assert caches["default"].shared
    assert caches["default"].namespace.startswith(b"db1:r3:default:g5.9:f")
    assert caches["stable"].namespace.startswith(b"db1:r3:stable:g9:f")
    assert not caches["templates"].shared and not caches["routing"].shared


def test_guessed_numbers_suspend_until_read_back(redis_url):
    tier, caches, _flags = make_tier(RedisClient(redis_url))
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    tier.suspend({"stable"})
    # stable cascades into default: both stop sharing, assets goes on.
    assert not caches["stable"].shared and not caches["default"].shared
    assert caches["assets"].shared
    changed = tier.adopt(3, {**SEQUENCES, "stable": 10})
    assert set(changed) == {"stable", "default"}
    assert caches["default"].namespace.startswith(b"db1:r3:default:g5.10:f")
    tier.suspend(None)
    assert not any(cache.shared for cache in caches.values())


def test_gate_refuses_caches_invalidated_in_this_thread(redis_url):
    tier, caches, flags = make_tier(RedisClient(redis_url))
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    tier.begin_unit(tier.sync_methods())
    gate = tier._gates["default"]
    unit = gate()
    assert isinstance(unit, UnitOfWork) and unit.pending() == {}
    caches["default"][KEY] = "computed before the invalidation"
    assert unit.pending() == {"default": 1}
    flags.names.add("stable")  # stable cascades into default
    assert gate() is False
    assert tier._gates["assets"]() is unit
    # The pending write computed before the invalidation is gone.
    assert unit.pending().get("default", 0) == 0
    assert tier.counters["pending_dropped_invalidated"] == 1
    seen = {}
    thread = threading.Thread(target=lambda: seen.update(other=tier._gates["default"]()))
    thread.start()
    thread.join()
    assert isinstance(seen["other"], UnitOfWork)  # other threads are not affected
    assert seen["other"] is not unit


def test_while_a_test_runs_only_threads_that_opted_in_use_redis(redis_url):
    # An HttpCase request runs in the test's uncommitted transaction, in
    # another thread than the one that changed data (thread-local flags).
    running = {"test": None}
    tier, caches, _flags = make_tier(RedisClient(redis_url), testing=lambda: running["test"])
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    tier.begin_unit(tier.sync_methods())
    gate = tier._gates["default"]
    unit = gate()
    assert isinstance(unit, UnitOfWork)
    caches["default"][KEY] = "computed before the test"
    assert unit.pending() == {"default": 1}
    running["test"] = "TestSomething.test_x"
    assert gate() is False  # neither read nor written
    assert unit.pending().get("default", 0) == 0
    tier.share_in_tests(True)
    assert gate() is unit
    seen = {}
    thread = threading.Thread(target=lambda: seen.update(other=tier._gates["default"]()))
    thread.start()
    thread.join()
    assert seen["other"] is False  # opting in is per thread
    tier.share_in_tests(False)
    running["test"] = None
    assert gate() is unit


def _entry_count(redis_url: str) -> int:
    return len(RedisClient(redis_url).execute("KEYS", "t:c:*"))


def _flush(redis_url: str) -> None:
    RedisClient(redis_url).execute("FLUSHALL")


KEY = ("res.partner", test_looks_secret, 1)  # any function works as the method element


def test_values_reach_redis_only_after_commit(redis_url):
    _flush(redis_url)
    client = RedisClient(redis_url)
    tier, caches, _flags = make_tier(client)
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    tier.begin_unit(tier.sync_methods())
    caches["default"][KEY] = "computed in the transaction"
    client.flush()
    assert _entry_count(redis_url) == 0
    assert tier.commit_unit(set(), False) == 1
    client.flush()
    assert _entry_count(redis_url) == 1
    # Another process (same namespace) reads it.
    other, other_caches, _ = make_tier(RedisClient(redis_url))
    other.ready = True
    other.adopt(3, SEQUENCES)
    assert other_caches["default"][KEY] == "computed in the transaction"


def test_rollback_sends_nothing(redis_url):
    _flush(redis_url)
    client = RedisClient(redis_url)
    tier, caches, _flags = make_tier(client)
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    tier.begin_unit(tier.sync_methods())
    caches["default"][KEY] = "from rolled back data"
    tier.rollback_unit()
    assert tier.commit_unit(set(), False) == 0
    client.flush()
    assert _entry_count(redis_url) == 0


def test_values_of_a_cache_invalidated_later_in_the_unit_are_dropped(redis_url):
    _flush(redis_url)
    client = RedisClient(redis_url)
    tier, caches, flags = make_tier(client)
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    tier.begin_unit(tier.sync_methods())
    caches["default"][KEY] = "before the write that invalidates"
    caches["assets"][KEY] = "unrelated"
    flags.names.add("default")
    # signal_changes clears the thread's names before our hook runs.
    invalidated = set(flags.names)
    flags.names.clear()
    assert tier.commit_unit(invalidated, False) == 1  # assets only
    client.flush()
    assert _entry_count(redis_url) == 1


def test_values_of_a_unit_that_saw_its_namespace_move_are_dropped(redis_url):
    # Threaded server: thread R starts a unit; thread W of the same process
    # commits a change of "stable" (cascading into "default") and adopts the
    # new numbers while R is still running; R then computes from its older
    # snapshot. Its values would carry the new namespace: they must not
    # reach Redis (other servers would serve them until the next change).
    _flush(redis_url)
    client = RedisClient(redis_url)
    tier, caches, _flags = make_tier(client)
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    tier.begin_unit(tier.sync_methods())  # R
    writer = threading.Thread(target=lambda: tier.adopt(3, {**SEQUENCES, "stable": 10}))
    writer.start()
    writer.join()
    caches["default"][KEY] = "computed from the snapshot before W's commit"
    caches["assets"][KEY] = "unrelated, namespace unchanged"
    before = tier.counters["pending_dropped_raced"]
    assert tier.commit_unit(set(), False) == 1  # assets only
    assert tier.counters["pending_dropped_raced"] == before + 1
    client.flush()
    assert _entry_count(redis_url) == 1
    # The next unit starts on the new namespace and shares again.
    tier.begin_unit(tier.sync_methods())
    caches["default"][KEY] = "computed after W's commit"
    assert tier.commit_unit(set(), False) == 1


def test_method_clear_is_published_at_commit_and_synced_elsewhere(redis_url):
    _flush(redis_url)
    worker_a, caches_a, _ = make_tier(RedisClient(redis_url))
    worker_b, caches_b, _ = make_tier(RedisClient(redis_url))
    for tier in (worker_a, worker_b):
        tier.ready = True
        tier.adopt(3, SEQUENCES)
        tier.begin_unit(tier.sync_methods())
    caches_b["default"][KEY] = "old"
    worker_b.commit_unit(set(), False)
    caches_b["default"].client.flush()
    assert caches_a["default"][KEY] == "old"  # A got it from Redis
    # A clears the method in a transaction: B sees nothing until A commits.
    assert not worker_a.has_method_clear("default", test_looks_secret)
    assert worker_a.request_method_clear("default", test_looks_secret)
    assert worker_a.has_method_clear("default", test_looks_secret)
    assert KEY not in caches_a["default"]
    assert worker_a._gates["default"]() is False
    assert worker_b.sync_methods() is not None
    assert KEY in caches_b["default"]
    fallback = worker_a.publish_method_clears(3, SEQUENCES)
    assert fallback == set()
    assert not worker_a.has_method_clear("default", test_looks_secret)
    worker_a.commit_unit(set(), False)
    # B's next unit drops its L1 entry and does not read the old shared one.
    worker_b.begin_unit(worker_b.sync_methods())
    assert KEY not in caches_b["default"]
    with pytest.raises(KeyError):
        caches_b["default"][KEY]


@pytest.mark.parametrize("lost", ["generations", "version", "both"])
def test_a_clear_whose_bookkeeping_was_lost_still_evicts_elsewhere(redis_url, lost):
    """Eviction (allkeys-lru), a FLUSH of one key or a failover can lose the
    version and the generation tokens right after a clear: other processes
    must still drop their copies, never serve them again."""
    _flush(redis_url)
    worker_a, _caches_a, _ = make_tier(RedisClient(redis_url))
    worker_b, caches_b, _ = make_tier(RedisClient(redis_url))
    for tier in (worker_a, worker_b):
        tier.ready = True
        tier.adopt(3, SEQUENCES)
        tier.begin_unit(tier.sync_methods())
    with pytest.raises(KeyError):
        caches_b["default"][KEY]
    caches_b["default"][KEY] = "old"
    worker_b.commit_unit(set(), False)
    worker_b.begin_unit(worker_b.sync_methods())
    assert worker_a.request_method_clear("default", test_looks_secret)
    worker_a.publish_method_clears(3, SEQUENCES)
    worker_a.commit_unit(set(), False)
    raw = RedisClient(redis_url)
    generations = [k for k in raw.execute("KEYS", "t:g:*")]
    if lost in ("generations", "both"):
        raw.execute("DEL", *generations)
    if lost in ("version", "both"):
        raw.execute("DEL", worker_a.methods_version_key)
    worker_b.begin_unit(worker_b.sync_methods())
    assert KEY not in caches_b["default"]
    with pytest.raises(KeyError):
        caches_b["default"][KEY]


def test_method_clear_falls_back_when_this_process_is_behind(redis_url):
    tier, _caches, _ = make_tier(RedisClient(redis_url))
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    tier.begin_unit(tier.sync_methods())
    assert tier.request_method_clear("default", test_looks_secret)
    assert tier.publish_method_clears(3, {**SEQUENCES, "default": 6}) == {"default"}


def test_method_clear_of_a_local_cache_is_refused():
    tier, _caches, _ = make_tier(None)
    assert not tier.request_method_clear("default", test_looks_secret)


def test_writes_of_a_unit_that_raced_a_method_clear_are_dropped(redis_url):
    _flush(redis_url)
    worker_a, caches_a, _ = make_tier(RedisClient(redis_url))
    worker_b, _caches_b, _ = make_tier(RedisClient(redis_url))
    for tier in (worker_a, worker_b):
        tier.ready = True
        tier.adopt(3, SEQUENCES)
        tier.begin_unit(tier.sync_methods())
    caches_a["default"][KEY] = "computed from a snapshot older than B's clear"
    worker_b.request_method_clear("default", test_looks_secret)
    worker_b.publish_method_clears(3, SEQUENCES)
    assert worker_a.commit_unit(set(), False) == 0
    assert worker_a.counters["pending_dropped_raced"] == 1


def test_redis_down_sync_evicts_clearable_methods(redis_url):
    tier, caches, _ = make_tier(RedisClient("redis://127.0.0.1:1/0", connect_timeout=0.1))
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    name = qualified_name(test_looks_secret)
    shared_tier.DECORATED_METHODS.add(("default", name))
    try:
        caches["default"][KEY] = "value"
        assert tier.sync_methods() is None
        assert KEY not in caches["default"]
    finally:
        shared_tier.DECORATED_METHODS.discard(("default", name))


# --------------------------------------------------------------------------- secrets


def test_each_database_keys_its_data_with_its_own_secret():
    asked = []
    stored = {"db1": "secret-of-db1", "db2": "secret-of-db2"}

    def read(db_name):
        asked.append(db_name)
        return stored.get(db_name)

    secrets = deployment_secrets.DeploymentSecrets(None, read)
    assert secrets.for_database("db1") == "secret-of-db1"
    assert secrets.for_database("db1") == "secret-of-db1"
    assert secrets.for_database("db2") == "secret-of-db2"
    assert asked == ["db1", "db2"]  # once per process and database
    assert secrets.for_database("db3") is None
    stored["db3"] = "installed since"
    assert secrets.for_database("db3") == "installed since"  # None is asked again
    assert secrets.for_database(None) is None


def test_a_configured_secret_keys_every_database():
    secrets = deployment_secrets.DeploymentSecrets("x" * 32, lambda db: pytest.fail("asked the db"))
    assert secrets.for_database("db1") == secrets.for_database(None) == "x" * 32


def test_an_unreadable_database_secret_is_none_and_logged(caplog):
    def read(db_name):
        raise OSError("connection refused")

    secrets = deployment_secrets.DeploymentSecrets(None, read)
    with caplog.at_level("WARNING"):
        assert secrets.for_database("db1") is None
    assert "database.secret" in caplog.text and "refused" not in caplog.text


def test_configured_secret_option():
    assert deployment_secrets.configured_secret(options()) is None
    assert deployment_secrets.configured_secret(options(ormcache_redis_secret="s" * 16)) == "s" * 16
    with pytest.raises(ConfigError, match="ormcache_redis_secret"):
        deployment_secrets.configured_secret(options(ormcache_redis_secret="short"))


def test_an_unreadable_database_is_asked_again_only_after_a_while(caplog):
    """Database names come from session records, chosen by whoever writes to
    Redis: a name that does not exist must not cost a PostgreSQL connection
    (and a log line) per request."""
    attempts = []
    now = [1000.0]

    def read(db_name):
        attempts.append(db_name)
        raise OSError("database does not exist")

    secrets = deployment_secrets.DeploymentSecrets(None, read, clock=lambda: now[0])
    with caplog.at_level("WARNING"):
        for _ in range(50):
            assert secrets.for_database("forged") is None
        assert secrets.for_database("also-forged") is None
    assert attempts == ["forged", "also-forged"]
    assert len(caplog.records) == 1  # one line a minute at most
    now[0] += 61
    assert secrets.for_database("forged") is None
    assert attempts == ["forged", "also-forged", "forged"]


def _two_workers(redis_url):
    _flush(redis_url)
    workers = [make_tier(RedisClient(redis_url)) for _ in range(2)]
    for tier, _caches, _flags in workers:
        tier.ready = True
        tier.adopt(3, SEQUENCES)
        tier.begin_unit(tier.sync_methods())
    return workers


def _publish(tier, caches, value):
    with pytest.raises(KeyError):
        caches["default"][KEY]
    caches["default"][KEY] = value
    tier.commit_unit(set(), False)
    assert caches["default"].client.flush(5)
    tier.begin_unit(tier.sync_methods())


@pytest.mark.parametrize("cache", [None, "default"])
def test_flush_makes_every_process_miss(redis_url, cache):
    from ormcache_redis.cli import main

    (worker_a, caches_a, _), (worker_b, caches_b, _) = _two_workers(redis_url)
    _publish(worker_b, caches_b, "before the flush")
    assert caches_a["default"][KEY] == "before the flush"  # A read it from Redis
    argv = ["flush", "--db", "db1", "--url", redis_url, "--prefix", "t:"]
    assert main(argv + (["--cache", cache] if cache else [])) == 0
    for tier, caches in ((worker_a, caches_a), (worker_b, caches_b)):
        tier.begin_unit(tier.sync_methods())  # the next request
        assert KEY not in caches["default"]  # L1 dropped
        with pytest.raises(KeyError):
            caches["default"][KEY]  # and Redis misses
    # A process started after the flush shares the new namespace.
    _publish(worker_a, caches_a, "after the flush")
    (late, late_caches, _) = make_tier(RedisClient(redis_url))
    late.ready = True
    late.adopt(3, SEQUENCES)
    late.begin_unit(late.sync_methods())
    assert late_caches["default"][KEY] == "after the flush"


def test_flush_of_one_cache_leaves_the_others(redis_url):
    from ormcache_redis.cli import main

    (worker_a, caches_a, _), _b = _two_workers(redis_url)
    with pytest.raises(KeyError):
        caches_a["assets"][KEY]
    caches_a["assets"][KEY] = "an asset"
    worker_a.commit_unit(set(), False)
    assert caches_a["assets"].client.flush(5)
    worker_a.begin_unit(worker_a.sync_methods())
    before = caches_a["assets"].namespace
    stable_before = caches_a["stable"].namespace
    assert (
        main(["flush", "--db", "db1", "--cache", "stable", "--url", redis_url, "--prefix", "t:"])
        == 0
    )
    worker_a.begin_unit(worker_a.sync_methods())
    assert caches_a["assets"].namespace == before
    assert caches_a["assets"][KEY] == "an asset"  # still shared (L1 or Redis)
    assert caches_a["stable"].namespace != stable_before


def test_lost_flush_epochs_never_bring_back_the_old_namespace(redis_url):
    _a, (worker_b, caches_b, _) = _two_workers(redis_url)
    _publish(worker_b, caches_b, "old")
    raw = RedisClient(redis_url)
    raw.execute("DEL", namespaces.flush_epochs_key("t:", "db1"))  # evicted
    (late, late_caches, _) = make_tier(RedisClient(redis_url))
    late.ready = True
    late.adopt(3, SEQUENCES)
    late.begin_unit(late.sync_methods())
    assert late_caches["default"].namespace != caches_b["default"].namespace
    with pytest.raises(KeyError):
        late_caches["default"][KEY]


def test_garbage_flush_epochs_are_ignored(redis_url):
    _flush(redis_url)
    raw = RedisClient(redis_url)
    key = namespaces.flush_epochs_key("t:", "db1")
    raw.execute("HSET", key, "*", "not hex!", "bad field name", "abcd", "default", "x" * 100)
    tier, caches, _ = make_tier(RedisClient(redis_url))
    tier.ready = True
    tier.adopt(3, SEQUENCES)
    epochs = tier.flush_epochs
    assert set(epochs) == {"*", "default"} and all(len(v) == 32 for v in epochs.values())
    assert caches["default"].shared

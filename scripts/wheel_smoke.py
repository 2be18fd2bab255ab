"""Exercises an installed wheel: the codec, the LRU, a value shared through
a real Redis between two caches (the second one's L1 is cold), and the
commands the wheel installs (``ormcache-redis --version``, ``ormcache-redis
doctor``) as a user runs them; then reads the addon's wheels given as
arguments: their series version, their requirements (this very engine, Odoo
of their series) and the manifest they carry.

    python scripts/wheel_smoke.py [dist/odoo_addon_ormcache_redis-*.whl ...]

Run by scripts/build_wheels.sh with the Python of a fresh virtualenv that
holds the wheel and the dependencies pip took from the package registry. It
starts its own redis-server (``ormcache_redis.testing``) on a free port.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import ormcache_redis
from ormcache_redis import LRU, Codec, RedisClient, RedisUnavailable, TwoTierCache
from ormcache_redis.testing import RedisServer


def wait_for_redis(client: RedisClient, attempts: int = 50) -> None:
    for _ in range(attempts):
        try:
            client.ping()
            return
        except RedisUnavailable:
            time.sleep(0.1)
    raise SystemExit(f"wheel: Redis at {client.address} did not answer")


def check_engine(url: str) -> None:
    codec = Codec()
    value = ({"a": 1.5}, [1, 2, 3], frozenset({"x"}), None, b"\x00")
    assert codec.loads(codec.dumps(value)) == value

    lru: LRU[tuple[str, int], str] = LRU(8)
    lru[("k", 1)] = "v"
    assert lru[("k", 1)] == "v"

    client = RedisClient(url, socket_timeout=1.0)
    wait_for_redis(client)
    secret = "wheel smoke test secret"
    shared = {"client": client, "codec": codec, "namespace": b"smoke", "secret": secret}
    writer = TwoTierCache("default", 16, **shared)
    writer[("res.partner", "name", 7)] = value
    assert client.flush(5.0), "the write-behind queue did not drain"
    reader = TwoTierCache("default", 16, **shared)
    assert reader[("res.partner", "name", 7)] == value
    assert reader.stats()["l2_hits"] == 1


def run_command(*argv: str) -> str:
    """Runs a console script of this environment; its output, or exit with it."""
    command = Path(sys.executable).with_name(argv[0])
    done = subprocess.run([str(command), *argv[1:]], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"wheel: `{' '.join(argv)}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def check_commands(url: str) -> list[str]:
    version = run_command("ormcache-redis", "--version").strip()
    expected = f"ormcache-redis {ormcache_redis.__version__}"
    assert version == expected, f"--version printed {version!r}, not {expected!r}"
    doctor = run_command("ormcache-redis", "doctor", url).splitlines()
    assert doctor and doctor[-1].startswith("0 blocking problem(s)"), doctor
    sessions = run_command("ormcache-redis-sessions", "--help")
    assert "to-redis" in sessions, sessions
    return [version, doctor[-1]]


def check_addon_wheel(path: Path) -> str:
    """The wheel's name, version and requirements as OCA's tooling writes
    them, and the manifest inside with the same series version."""
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(wheel.read(metadata_name).decode())
        manifest = ast.literal_eval(
            wheel.read("odoo/addons/ormcache_redis/__manifest__.py").decode()
        )
    version = metadata["Version"]
    series = ".".join(version.split(".")[:2])
    requires = metadata.get_all("Requires-Dist") or []
    assert metadata["Name"] == "odoo-addon-ormcache_redis", metadata["Name"]
    assert manifest["version"] == version, (manifest["version"], version)
    assert f"ormcache-redis=={ormcache_redis.__version__}" in requires, requires
    odoo = [requirement for requirement in requires if requirement.startswith("odoo")]
    assert len(odoo) == 1 and series in odoo[0], requires
    assert "odoo/addons/ormcache_redis/README.rst" in names
    assert not any(name.endswith(("pyproject.toml", ".pyc")) for name in names)
    return f"{path.name}: {version}, requires {', '.join(sorted(requires))}"


def main(addon_wheels: list[Path]) -> None:
    with RedisServer() as server:
        check_engine(server.url)
        lines = check_commands(server.url)
    lines += [check_addon_wheel(path) for path in addon_wheels]
    print(
        f"wheel: ormcache_redis {ormcache_redis.__version__} from {ormcache_redis.__file__}: "
        "codec, LRU and a shared value through Redis work"
    )
    for line in lines:
        print(f"wheel:   {line}")


if __name__ == "__main__":
    main([Path(argument) for argument in sys.argv[1:]])

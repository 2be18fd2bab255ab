"""examples/docker-compose: the files parse and agree with the addon.

Docker cannot pull images where the suite runs, so the example is checked
as text (the Dockerfile with BuildKit's parser, from the `dockerfile`
package): the compose file is valid YAML with the services it promises, every
variable it gives Odoo is an option the addon reads, the Dockerfile copies
files that exist (or that `make wheel` writes), and odoo.conf loads the addon
server-wide from where the Dockerfile puts it.
"""

from __future__ import annotations

import configparser
import fnmatch
from pathlib import Path
from typing import Any

import dockerfile as dockerfile_parser
import pytest
import yaml

from ormcache_redis.config import OPTIONS, REDIS_URL_FALLBACK

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "docker-compose"
# What maturin names the wheels `make wheel` builds.
WHEEL_NAMES = [
    "ormcache_redis-0.1.0-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    "ormcache_redis-0.1.0-cp310-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
]
# Read by the official image's entrypoint (where PostgreSQL is).
IMAGE_VARIABLES = {"HOST", "PORT", "USER", "PASSWORD"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLE / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, list[str]]]:
    """(instruction, arguments) per instruction, read by BuildKit's own parser."""
    return [
        (command.cmd.upper(), list(command.value))
        for command in dockerfile_parser.parse_file(str(EXAMPLE / "Dockerfile"))
    ]


@pytest.fixture(scope="module")
def odoo_conf() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",))
    parser.read_string((EXAMPLE / "odoo.conf").read_text())
    return parser["options"]


def test_compose_has_redis_with_persistence_postgres_and_odoo(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"db", "redis", "odoo"}
    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert services["db"]["image"].startswith("postgres:")
    odoo = services["odoo"]
    assert set(odoo["depends_on"]) == {"db", "redis"}
    for name in odoo["depends_on"]:
        assert "healthcheck" in services[name]
    assert set(compose["volumes"]) == {
        volume.split(":")[0] for service in services.values() for volume in service["volumes"]
    }


def test_odoo_variables_are_options_the_addon_reads(compose: dict[str, Any]) -> None:
    environment = compose["services"]["odoo"]["environment"]
    addon_variables = {name.upper() for name in OPTIONS} | {REDIS_URL_FALLBACK}
    assert set(environment) <= addon_variables | IMAGE_VARIABLES, set(environment) - (
        addon_variables | IMAGE_VARIABLES
    )
    assert environment["SESSION_STORE"] == "redis"
    redis_host = "redis://redis:6379/"
    assert environment["ORMCACHE_REDIS_URL"].startswith(redis_host)
    assert environment["SESSION_STORE_URL"].startswith(redis_host)
    # The database the image's entrypoint connects to is the compose's own.
    db = compose["services"]["db"]["environment"]
    assert (environment["USER"], environment["PASSWORD"]) == (
        db["POSTGRES_USER"],
        db["POSTGRES_PASSWORD"],
    )
    assert environment["HOST"] == "db"


def test_odoo_variables_parse_as_the_addon_would(compose: dict[str, Any]) -> None:
    from ormcache_redis.config import OptionSource
    from ormcache_redis.odoo_support.settings import load_settings
    from ormcache_redis.sessions.settings import session_store_settings

    environment = {
        name: str(value) for name, value in compose["services"]["odoo"]["environment"].items()
    }
    source = OptionSource(None, environment)
    assert load_settings(source, ["default", "stable", "assets"]).enabled
    assert session_store_settings(source) is not None


def test_dockerfile_extends_the_official_image_with_wheel_and_addon(
    dockerfile: list[tuple[str, list[str]]], compose: dict[str, Any], odoo_conf: Any
) -> None:
    build = compose["services"]["odoo"]["build"]
    context = (EXAMPLE / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == EXAMPLE / "Dockerfile"

    assert dockerfile[0][0] == "FROM" and dockerfile[0][1][0].startswith("odoo:")
    copies = [arguments for keyword, arguments in dockerfile if keyword == "COPY"]
    sources = [source for arguments in copies for source in arguments[:-1]]
    wheel_patterns = [source for source in sources if source.endswith(".whl")]
    assert wheel_patterns and all(
        any(fnmatch.fnmatch(f"dist/{name}", pattern) for pattern in wheel_patterns)
        for name in WHEEL_NAMES
    )
    for source in set(sources) - set(wheel_patterns):
        assert (context / source).exists(), source

    addon_destination = next(
        arguments[-1] for arguments in copies if arguments[0] == "odoo_addon/ormcache_redis"
    )
    addons_paths = [path.strip() for path in odoo_conf["addons_path"].split(",")]
    assert str(Path(addon_destination).parent) in addons_paths
    assert ["examples/docker-compose/odoo.conf", "/etc/odoo/odoo.conf"] in copies

    runs = " ".join(arguments[0] for keyword, arguments in dockerfile if keyword == "RUN")
    assert "--break-system-packages" in runs and "ormcache-redis" in runs
    # The image runs Odoo as `odoo`, not as the root that installed the wheel.
    users = [arguments[0] for keyword, arguments in dockerfile if keyword == "USER"]
    assert users[-1] == "odoo"


def test_dockerignore_lets_through_what_the_dockerfile_copies(
    dockerfile: list[tuple[str, list[str]]],
) -> None:
    rules = [
        line.strip()
        for line in (EXAMPLE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        # Docker's rule: the last matching pattern decides.
        included = True
        for rule in rules:
            negated = rule.startswith("!")
            pattern = rule.lstrip("!").removeprefix("**/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/"):
                included = negated
        return included

    for keyword, arguments in dockerfile:
        if keyword == "COPY":
            for source in arguments[:-1]:
                path = f"dist/{WHEEL_NAMES[0]}" if source.endswith(".whl") else source
                assert sent(path), source
    assert not sent("target/release/lib_native.so")
    assert not sent(".venv/bin/python")


def test_odoo_conf_loads_the_addon_server_wide_with_four_workers(odoo_conf: Any) -> None:
    modules = [name.strip() for name in odoo_conf["server_wide_modules"].split(",")]
    assert modules[-1] == "ormcache_redis" and {"base", "web"} <= set(modules)
    assert int(odoo_conf["workers"]) == 4
    # The addon's options come from the environment, not from this file.
    assert not [name for name in odoo_conf if name.startswith(("ormcache_redis", "session_store"))]

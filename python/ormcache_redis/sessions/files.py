"""Odoo's filesystem session store, read and written without Odoo.

Odoo 18/19 write JSON files named by their 84-character id; Odoo 17 writes
pickles named by a 40-hex id. Pickles are read with the same restricted
unpickler rules Odoo 17 applies to them (``odoo.tools.misc``: only ``set``
and ``datetime``/``date``/``time`` may be looked up, plus pytz's
UTC/timezone constructors; every other global is refused). Anything this
reader refuses, Odoo 17 would have refused too (and served an empty
session), so nothing loadable is lost, and no code in a session file can run.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ormcache_redis.sessions.records import FORMAT_JSON
from ormcache_redis.sessions.versions import record_format_of

_LEGACY_PREFIX, _LEGACY_SUFFIX = "werkzeug_", ".sess"


class SessionPickleRefused(pickle.UnpicklingError):
    """A session pickle names a global outside Odoo 17's allow-list."""


_PICKLE_ALLOWED = {
    ("builtins", "set"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("pytz", "_p"),
    ("pytz", "_UTC"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Odoo 17's ``odoo.tools.misc.Unpickler`` rules, without importing Odoo."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise SessionPickleRefused(f"global {module}.{name} is not allowed in a session")
        return super().find_class(module, name)


def load_session_pickle(data: bytes) -> dict[str, Any]:
    loaded = RestrictedUnpickler(io.BytesIO(data), encoding="ASCII").load()
    if not isinstance(loaded, dict):
        raise pickle.UnpicklingError("a session file holds a dict")
    return loaded


def session_files(session_dir: Path) -> Iterator[tuple[str, Path]]:
    """(sid, path) of every session file: ``<dir>/<2 chars>/<sid>`` (Odoo
    17+) and the older ``<dir>/werkzeug_<sid>.sess``."""
    for entry in sorted(session_dir.iterdir()):
        if entry.is_dir() and len(entry.name) == 2:
            for path in sorted(entry.iterdir()):
                if path.is_file() and record_format_of(path.name) and path.name[:2] == entry.name:
                    yield path.name, path
        elif entry.is_file() and entry.name.startswith(_LEGACY_PREFIX):
            sid = entry.name[len(_LEGACY_PREFIX) :].removesuffix(_LEGACY_SUFFIX)
            if entry.name.endswith(_LEGACY_SUFFIX) and record_format_of(sid):
                yield sid, entry


def read_session_file(path: Path, fmt: bytes) -> dict[str, Any]:
    raw = path.read_bytes()
    if fmt == FORMAT_JSON:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a session file holds a JSON object")
        return data
    return load_session_pickle(raw)


def write_session_file(session_dir: Path, sid: str, data: dict[str, Any], mtime: float) -> None:
    """Write like Odoo's FilesystemSessionStore: temp file, then rename."""
    directory = session_dir / sid[:2]
    directory.mkdir(mode=0o755, exist_ok=True)
    if record_format_of(sid) == FORMAT_JSON:
        content = json.dumps(data).encode()
    else:
        content = pickle.dumps(data, pickle.HIGHEST_PROTOCOL)
        load_session_pickle(content)  # Odoo 17 must be able to read it back
    fd, tmp = tempfile.mkstemp(suffix=".__wz_sess", dir=session_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, directory / sid)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass

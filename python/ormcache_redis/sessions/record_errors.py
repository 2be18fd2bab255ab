"""What is wrong with bytes found in Redis where a session record should
be, or with a session that cannot be written as one."""

from __future__ import annotations


class RecordError(ValueError):
    """Bytes found in Redis are not a session record this code can read."""


class RecordForged(RecordError):
    """The record's tag does not verify: written by someone without the key
    (or a server with another secret), or copied from another session."""


class RecordTooLarge(RecordError):
    """A record longer than :data:`MAX_RECORD_BYTES` (``size``: its length)."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class RecordKeyMissing(RecordError):
    """No secret is known for the database a record names (reading), or a
    session that authenticates someone would have to be written under the
    public key (writing)."""

    def __init__(self, message: str, db: str | None) -> None:
        super().__init__(message)
        self.db = db

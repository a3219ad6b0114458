"""SQLite with a fair write lock shared by every process on the machine.

SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps 1, 2,
5, 10, 15, 20, 25... ms between tries. With a web server and two workers writing hundreds
of short transactions a second, most of the time went into those sleeps (the emit
benchmark ran at about 50 events a second). Taking an flock() on a file beside the database
before `BEGIN IMMEDIATE` queues writers in the kernel instead, which wakes the next one
the moment the lock is released. PostgreSQL needs none of this.

Checkpoints move the same way: SQLite copies the WAL back into the database inside whichever
commit crosses `wal_autocheckpoint` pages, and that commit then waits for the copy and its
fsyncs (about 40 % of an emit's cost, amortised). Connections get a high threshold as a
backstop, and each worker's sweep calls `checkpoint()` every second instead, off the API's path.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import Any

from django.db import OperationalError
from django.db.backends.sqlite3 import base

_FIRST_WAIT = 0.0001  # seconds between tries for a busy lock, doubling up to _LONGEST_WAIT
_LONGEST_WAIT = 0.002


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock_fd: int | None = None
        self._write_locked = False

    def _lock_path(self) -> str | None:
        name = str(self.settings_dict["NAME"])
        if not name or name == ":memory:" or name.startswith("file:"):
            return None
        return name + ".writelock"

    def _acquire_write_lock(self) -> None:
        path = self._lock_path()
        if path is None:
            return
        if self._write_lock_fd is None:
            self._write_lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._wait_for_lock(self._write_lock_fd)
        self._write_locked = True

    def _wait_for_lock(self, fd: int) -> None:
        """Take the lock, or fail after the database's `timeout` option with a clear error.

        A blocking flock() waited forever behind a writer that never let go. Polling with short
        sleeps keeps the wait in the order of the lock's hold times (a few milliseconds).
        """
        limit = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 30))
        deadline = time.monotonic() + limit
        wait = _FIRST_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OperationalError(
                        f"database is locked: another process held SQLite's write lock for "
                        f"more than {limit:g} s ({self._lock_path()})"
                    ) from None
                time.sleep(wait)
                wait = min(wait * 2, _LONGEST_WAIT)

    def _release_write_lock(self) -> None:
        if self._write_locked and self._write_lock_fd is not None:
            fcntl.flock(self._write_lock_fd, fcntl.LOCK_UN)
        self._write_locked = False

    def checkpoint(self) -> None:
        """Copy the WAL into the database without waiting for readers or blocking writers."""
        with self.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _start_transaction_under_autocommit(self) -> None:
        self._acquire_write_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_write_lock()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()
        finally:
            self._release_write_lock()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._release_write_lock()
            if self._write_lock_fd is not None:
                os.close(self._write_lock_fd)
                self._write_lock_fd = None

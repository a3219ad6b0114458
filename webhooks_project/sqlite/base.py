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

import contextlib
import fcntl
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path
from typing import Any

from django.db import OperationalError
from django.db.backends.sqlite3 import base

from lib import files


@functools.cache
def _lock_waiters() -> ThreadPoolExecutor:
    """Threads that wait in flock() for the write lock on behalf of connections."""
    return ThreadPoolExecutor(64, thread_name_prefix="sqlite-lock")


# A forked child has none of the parent's threads: it makes its own waiters.
os.register_at_fork(after_in_child=_lock_waiters.cache_clear)


def _unlock_and_close(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock_fd: int | None = None
        self._write_locked = False

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        # SQLite creates a database with the umask's mode (0644) and gives its -wal and
        # -shm the database's mode: an empty 0600 file first keeps all three private.
        path = self._file_path()
        if path is not None:
            files.create_private(Path(path))
        return super().get_new_connection(conn_params)

    def _file_path(self) -> str | None:
        name = str(self.settings_dict["NAME"])
        if not name or name == ":memory:" or name.startswith("file:"):
            return None
        return name

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
        try:
            fcntl.flock(self._write_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._wait_for_lock(path)
        self._write_locked = True

    def _wait_for_lock(self, path: str) -> None:
        """Wait in the kernel's queue for the lock, but no longer than the `timeout` option.

        flock() has no timeout, so a waiter thread blocks in it while this one waits for it
        with one. Polling instead (try, sleep, try) lost the queue's order: the workers' many
        short transactions starved the emitter (the benchmark's emit took twice as long). A
        wait given up on leaves the waiter to unlock and close its descriptor once it gets
        the lock; this connection opens a fresh one next time.
        """
        limit = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 30))
        fd = self._write_lock_fd
        assert fd is not None
        waiter = _lock_waiters().submit(fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            waiter.result(timeout=limit)
        except FuturesTimeout:
            self._write_lock_fd = None
            waiter.add_done_callback(lambda _: _unlock_and_close(fd))
            raise OperationalError(
                f"database is locked: another process held SQLite's write lock for more "
                f"than {limit:g} s ({path})"
            ) from None

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

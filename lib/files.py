"""Files only this user may read: var/ holds the database, keys and the demo login.

Files are created 0600 and directories 0700, whatever the process's umask.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
# For processes that create files under var/ (SQLite's -wal and -shm, Redis's dump).
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> None:
    """Create `path` (and parents) 0700 if missing; an existing directory is left as it is
    (`secure_tree` tightens one; the embedded PostgreSQL, run as its own user under root,
    needs to pass through var/)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write `text` to a 0600 file (an existing file is made 0600 before it is written)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def create_private(path: Path) -> None:
    """Create an empty 0600 file unless it exists (before SQLite creates a database there,
    so its -wal and -shm, which SQLite gives the database's mode, are private too)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError:
        return  # it exists, or its directory does not: SQLite says so in its own words
    os.close(fd)


def secure_tree(root: Path) -> None:
    """Make `root` and every directory under it 0700 and every file 0600.

    For a var/ written before these modes: its database and demo login were 0644.
    """
    private_dir(root)
    os.chmod(root, DIR_MODE)
    for current, dirs, files in os.walk(root):
        for name in dirs:
            path = Path(current, name)
            if not path.is_symlink():
                os.chmod(path, DIR_MODE)
        for name in files:
            path = Path(current, name)
            if not path.is_symlink():
                os.chmod(path, FILE_MODE)

"""One driver at a time on a journal file.

Optuna's own journal lock guards each write, for milliseconds; it does not keep a second
driver out. And a driver on a journal takes every RUNNING trial it finds for a killed
driver's orphan (`storage.recover_orphans`: the journal has no heartbeats), so a second
driver started beside a live one failed the first one's trials. A driver therefore holds an
exclusive `flock` on a file beside the journal for its whole run, and a second one is
refused before it changes anything. The OS releases the lock when its holder dies, `kill -9`
included, so a rerun after a crash continues at once; a driver removes the file as it ends.
Database storages take no such lock: they are for several drivers (heartbeats tell a dead
driver's trials from a live one's).
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trialfuse.driver.storage import DRIVER, journal_path
from trialfuse.errors import UserError


def lock_file(journal: Path) -> Path:
    """The file a journal's driver holds locked: hidden beside it (a run directory's stays a run's)."""
    return journal.with_name(f".{journal.name}.driver")


@contextmanager
def sole_driver(storage: str | None, out: Path) -> Iterator[None]:
    """Hold the journal of `--storage` (None: the run directory's) for this driver while inside;
    refuse (UserError, exit 2) where another live driver holds it. A database URL: nothing held."""
    journal = journal_path(storage, out)
    if journal is None:
        yield
        return
    path = lock_file(journal)
    where = f"--storage {storage}" if storage else f"--out {out}"
    while True:
        try:
            journal.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{where}: cannot write beside its journal, {path} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            raise UserError(f"{where}: another driver ({holder}) is running on its journal, which is for one "
                            "driver at a time: wait for it to end, or give several drivers a database to share "
                            "(--storage sqlite:///study.db on one machine, postgresql+psycopg2://... across "
                            "hosts)") from None
        except OSError as exc:  # a file system without locks (NFS without its lock daemon, some FUSE mounts)
            os.close(handle)
            raise UserError(f"{where}: cannot lock {path} ({exc.strerror or exc}): its journal needs a file "
                            "system with locks; use a local folder, or a database --storage") from None
        if path.exists() and os.stat(path).st_ino == os.fstat(handle).st_ino:
            break
        os.close(handle)  # a driver that just ended removed the file we locked: lock the one there now
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, DRIVER.encode(), 0)  # who holds it, for the refusal's line
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: the next driver locks a file of its own
        os.close(handle)

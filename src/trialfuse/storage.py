"""The Optuna storage a run keeps its studies in: the run directory's journal file by
default (one driver), or a database URL that several drivers on several hosts share."""
from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy

from trialfuse import run_dir
from trialfuse.errors import UserError
from trialfuse.study import retry_once

HEARTBEAT_SECONDS = 20  # database storage: a trial with no heartbeat for 3 of these is an orphan
CREATE_ATTEMPTS = 4
LOCK_WAIT_SECONDS = 120  # how long a driver waits for another to finish creating the tables
SCHEMA_LOCK_KEY = 0x747269616C66  # "trialf": the advisory lock every trialfuse driver takes to create the schema
SCHEMA_LOCKS = {  # dialect: (statements that take it, the one that releases it); held by the session
    "postgresql": ((f"SELECT set_config('lock_timeout', '{LOCK_WAIT_SECONDS}s', false)",
                    f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})"),
                   f"SELECT pg_advisory_unlock({SCHEMA_LOCK_KEY})"),
    "mysql": ((f"SELECT GET_LOCK('trialfuse_schema', {LOCK_WAIT_SECONDS})",),  # 0 when the wait ran out
              "SELECT RELEASE_LOCK('trialfuse_schema')"),
}
SCHEMA_LOCKS["mariadb"] = SCHEMA_LOCKS["mysql"]
# The race's errors: PostgreSQL's SQLSTATEs unique_violation, duplicate_table, duplicate_object
# (Optuna's enum types); MySQL's ER_DUP_ENTRY and ER_TABLE_EXISTS_ERROR.
RACE_ERROR_CODES = {"23505", "42P07", "42710", 1062, 1050}


def open_storage(url: str | None, out: Path) -> optuna.storages.BaseStorage:
    """A real Optuna storage: the run's journal file by default, any Optuna URL if given."""
    if url and "://" in url:
        return _open_database(url)
    path = Path(url) if url else out / run_dir.JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend)


def _open_database(url: str) -> optuna.storages.RDBStorage:
    """A database several drivers share; a driver's trials whose heartbeat stops are asked again."""
    attempt = 0
    while True:
        try:
            with _schema_lock(url), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat; knowingly
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                                  grace_period=3 * HEARTBEAT_SECONDS,
                                                  heartbeat_stale_trial_callback=retry_once)
        except Exception as exc:
            attempt += 1
            if attempt == CREATE_ATTEMPTS or not _lost_creation_race(exc):
                raise UserError(f"cannot open --storage {url}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5 * attempt)


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Drivers started together on an empty database would race to create Optuna's tables
    (the losers see DuplicateTable, DuplicateObject or a unique violation, depending on how
    they interleave). Under a database-wide lock one driver creates them and the others wait,
    then find them there, so no driver sees an error. PostgreSQL and MySQL have such a lock;
    SQLite is one file for one driver at a time (Optuna advises against sharing it), so it
    takes none."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        lock = SCHEMA_LOCKS.get(engine.dialect.name)
        if lock is None:
            yield
            return
        take, release = lock
        with engine.connect() as connection:
            if [connection.execute(sqlalchemy.text(statement)).scalar() for statement in take][-1] == 0:
                raise TimeoutError(f"another driver held the table-creation lock for {LOCK_WAIT_SECONDS} s")
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(release))
    finally:
        engine.dispose()


def _lost_creation_race(exc: Exception) -> bool:
    """True for the errors of a table-creation race, told by the database's error code (not its
    message): a client that takes no lock (a plain Optuna script) may still create the tables
    while we do, and opening again then finds them."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)  # psycopg2, psycopg 3
    if code is None and orig is not None and orig.args and isinstance(orig.args[0], int):
        code = orig.args[0]  # MySQL drivers: the server's error number
    return code in RACE_ERROR_CODES

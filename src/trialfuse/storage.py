"""The Optuna storage a run keeps its studies in: the run directory's journal file by
default (one driver), or a database URL that several drivers on several hosts share."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna

from trialfuse import run_dir
from trialfuse.errors import UserError
from trialfuse.study import retry_once

HEARTBEAT_SECONDS = 20  # database storage: a trial with no heartbeat for 3 of these is an orphan
CREATE_ATTEMPTS = 4


def open_storage(url: str | None, out: Path) -> optuna.storages.BaseStorage:
    """A real Optuna storage: the run's journal file by default, any Optuna URL if given."""
    if url and "://" in url:
        return _open_database(url)
    path = Path(url) if url else out / run_dir.JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend)


def _open_database(url: str) -> optuna.storages.RDBStorage:
    """A database several drivers share; a driver's trials whose heartbeat stops are asked again.

    Drivers started together may race to create Optuna's tables on an empty database (the
    loser gets a unique-key violation); the tables exist by then, so opening again succeeds.
    """
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna; we rely on it knowingly
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                                  grace_period=3 * HEARTBEAT_SECONDS,
                                                  heartbeat_stale_trial_callback=retry_once)
        except Exception as exc:
            attempt += 1
            if attempt == CREATE_ATTEMPTS or "duplicate key" not in str(exc).lower():
                raise UserError(f"cannot open --storage {url}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5 * attempt)

"""The Optuna storage a run keeps its studies in: the run directory's journal file by
default (one driver), or a database URL that several drivers on several hosts share."""
from __future__ import annotations

from pathlib import Path

import optuna

from trialfuse import run_dir
from trialfuse.errors import UserError
from trialfuse.study import retry_once

HEARTBEAT_SECONDS = 20  # database storage: a trial with no heartbeat for 3 of these is an orphan


def open_storage(url: str | None, out: Path) -> optuna.storages.BaseStorage:
    """A real Optuna storage: the run's journal file by default, any Optuna URL if given."""
    if url and "://" in url:
        try:  # several drivers may share it: a driver's trials whose heartbeat stops are asked again
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                              grace_period=3 * HEARTBEAT_SECONDS, failed_trial_callback=retry_once)
        except Exception as exc:
            raise UserError(f"cannot open --storage {url}: {str(exc).splitlines()[0]}") from None
    path = Path(url) if url else out / run_dir.JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend)

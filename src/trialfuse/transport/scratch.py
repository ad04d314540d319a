"""A pool's scratch folder (the search rows it ships, rows to score or explain, decided trials'
stop files): one per driver, named for its host and process, so the next run clears what a killed driver left
and never a live driver's, even when two share one --out."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

PREFIX = ".pool-"


def make_scratch(parent: Path | None) -> Path:
    """A new folder `.pool-<host>-<pid>-<random>` in `parent` (the system's temporary folder
    if None), once the folders there whose driver is gone are removed."""
    if parent is not None:  # a killed driver's leftovers are cleared by the next run
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(f"{PREFIX}*"):
            if not owner_alive(stale.name):
                shutil.rmtree(stale, ignore_errors=True)
    owner = f"{PREFIX}{socket.gethostname()}-{os.getpid()}-"  # whose it is: another live driver's stays
    return Path(tempfile.mkdtemp(prefix=owner, dir=parent))  # unique name: no collisions


def owner_alive(name: str) -> bool:
    """Whether the driver that made scratch folder `name` (.pool-<host>-<pid>-...) may still use it:
    on this host, while that process lives; another host's folder is never judged dead from here."""
    parts = name.split("-")
    if len(parts) < 4 or not parts[-2].isdigit():
        return False  # an older run's unnamed folder
    host, pid = "-".join(parts[1:-2]), int(parts[-2])
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_file(scratch: Path, family: str, trial: int) -> Path:
    """The file whose appearance stops a trial's running folds (engine.families.stoppable)."""
    return scratch / "stop" / f"{family}-{trial}"


def request_stop(scratch: Path, family: str, trial: int) -> None:
    """Write the trial's stop file: its running folds answer `cut` within a boosting round or a few
    epochs (a fused NN task once every trial it holds has one)."""
    path = stop_file(scratch, family, trial)
    path.parent.mkdir(exist_ok=True)
    path.touch()

"""Fixtures of the transport contract (contract.py)."""
from __future__ import annotations

import numpy as np
import pytest

from trialfuse.survivors import make_survivors
from trialfuse.transport import protocol


@pytest.fixture(scope="class")
def worker(request):
    """The transport under test, started once per test class by its `start_worker()`."""
    started = request.cls.start_worker()
    yield started
    started.close()


@pytest.fixture(scope="module")
def resident(tmp_path_factory):
    """A table of 300 rows and two folds, as the driver writes it for load_dataset."""
    X, y, _ = make_survivors(300, seed=0)
    path = tmp_path_factory.mktemp("dataset") / "search_rows.npz"
    np.savez(path, X=X, y=y)
    folds = [(np.arange(0, 200), np.arange(200, 300)), (np.arange(100, 300), np.arange(0, 100))]
    return protocol.load_dataset(str(path), folds)


@pytest.fixture(scope="module")
def resident_classes(tmp_path_factory):
    """The same rows and folds with three classes (the reference score's bands, as codes) and the task they are."""
    from trialfuse.survivors import score_bands
    from trialfuse.task import Kind, Task

    X, score, _ = make_survivors(300, seed=0)
    labels = score_bands(score, 3)
    task = Task(Kind.MULTICLASS, tuple(sorted(set(labels))), "log_loss")
    path = tmp_path_factory.mktemp("classes") / "search_rows.npz"
    y = np.searchsorted(np.array(task.classes), labels).astype(np.float64)
    np.savez(path, X=X, y=y)
    folds = [(np.arange(0, 200), np.arange(200, 300)), (np.arange(100, 300), np.arange(0, 100))]
    return protocol.load_dataset(str(path), folds, task=task), y, task

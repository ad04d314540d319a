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

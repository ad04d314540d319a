"""Several drivers share one study through PostgreSQL: N trials in total, none duplicated or lost.

The test starts its own PostgreSQL server (Debian's package) on a free port in a private
directory and stops it afterwards; it skips, saying why, only where none is installed.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from trialfuse.study import counting

CODE = "import sys; from trialfuse.cli import main; sys.exit(main(sys.argv[1:]))"


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql); .ci/run installs it")
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install psycopg2-binary)")
    home = Path(tempfile.mkdtemp(prefix="trialfuse-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(home, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = home / "data", _free_port()
    subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "trialfuse"], check=True,
                   capture_output=True)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c max_connections=200"
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://trialfuse@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_two_drivers_on_one_postgresql_study_run_exactly_n_trials(survivors_csv, tmp_path, postgres_url):
    n = 10
    drivers = [subprocess.Popen([sys.executable, "-c", CODE, "run", str(survivors_csv), "--target", "score",
                                 "--models", "lightgbm", "--trials", str(n), "--folds", "2", "--devices", "1",
                                 "--storage", postgres_url, "--out", str(tmp_path / f"driver{i}"), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [d.communicate(timeout=600) for d in drivers]
    for driver, (_, err) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, err
    trials = optuna.load_study(study_name="lightgbm", storage=postgres_url).get_trials(deepcopy=False)
    counted = counting(trials)
    assert len(counted) == n  # the budget is shared, not per driver
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in counted)
    assert len({t.number for t in trials}) == len(trials)  # each trial told once
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]  # none lost in flight
    assert len({t.user_attrs["driver"] for t in counted}) == 2  # both drivers did part of the work
    for out, _ in outputs:  # each driver compares on the shared study and saves the same winner
        results = json.loads(out)
        assert results["families"]["lightgbm"]["trials_complete"] + results["families"]["lightgbm"][
            "trials_pruned"] == n

"""A killed run loses nothing that finished: rerunning the same command continues it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from conftest import cli

CODE = "import sys; from trialfuse.cli import main; sys.exit(main(sys.argv[1:]))"


def completed(journal) -> list[optuna.trial.FrozenTrial]:
    if not journal.exists():
        return []
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    try:
        study = optuna.load_study(study_name="lightgbm", storage=storage)
    except KeyError:
        return []
    return study.get_trials(deepcopy=True, states=(optuna.trial.TrialState.COMPLETE,))


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_kill_9_the_driver_then_rerun_completes_exactly_the_requested_trials(survivors_csv, tmp_path):
    out = tmp_path / "run"
    args = ["run", survivors_csv, "--target", "score", "--models", "lightgbm", "--trials", "24", "--folds", "3",
            "--out", out, "--quiet"]
    driver = subprocess.Popen([sys.executable, "-c", CODE, *map(str, args)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while len(completed(out / "study.journal")) < 4:
        assert driver.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    workers = children_of(driver.pid)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {t.number: (t.params, t.value) for t in completed(out / "study.journal")}
    assert 4 <= len(before) < 24
    for pid in workers:  # orphaned workers notice their driver is gone and exit
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"worker {pid} outlived its killed driver")

    proc = cli(*args[:-1], "--json")
    assert proc.returncode == 0, proc.stderr
    after = completed(out / "study.journal")
    assert len(after) == 24  # exactly the requested trials, none lost, none extra
    by_number = {t.number: (t.params, t.value) for t in after}
    for number, record in before.items():
        assert by_number[number] == record  # finished trials are kept, not recomputed
    results = json.loads(proc.stdout)
    assert results["families"]["lightgbm"]["trials_complete"] == 24
    assert (out / "best_model" / "model.txt").is_file()


@pytest.mark.parametrize("to_group", [True, False], ids=["ctrl-c", "sigint-driver"])
def test_interrupt_exits_130_and_leaves_no_worker(survivors_csv, tmp_path, to_group):
    out = tmp_path / "run"
    args = ["run", survivors_csv, "--target", "score", "--models", "catboost", "--trials", "40", "--folds", "3",
            "--out", out, "--quiet"]
    driver = subprocess.Popen([sys.executable, "-c", CODE, *map(str, args)], stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    while len(children_of(driver.pid)) < 2 or not (out / "study.journal").exists():
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.2)
    time.sleep(2)  # let the workers take jobs
    workers = children_of(driver.pid)
    if to_group:
        os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    else:
        os.kill(driver.pid, signal.SIGINT)
    assert driver.wait(timeout=60) == 130
    assert driver.stderr.read().strip() == "trialfuse: interrupted; rerun the same command to continue"
    time.sleep(1.5)
    alive = [p for p in workers if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert alive == []
    assert not (out / "results.json").exists()

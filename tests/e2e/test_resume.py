"""A killed run loses nothing that finished: rerunning the same command continues it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pytest

from helpers import CLI_CODE as CODE
from helpers import cli, saved_files

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out


def finished(journal, family: str = "lightgbm") -> list[optuna.trial.FrozenTrial]:
    """Trials that ran to an end (complete, or pruned after a losing fold)."""
    if not journal.exists():
        return []
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    try:
        study = optuna.load_study(study_name=family, storage=storage)
    except KeyError:
        return []
    return study.get_trials(deepcopy=True, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


def trials_all(journal) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    return optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=True)


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_kill_9_the_driver_then_rerun_completes_exactly_the_requested_trials(survivors_csv, tmp_path):
    out = tmp_path / "run"
    args = ["run", survivors_csv, "--target", "score", "--models", "lightgbm", "--trials", "24", "--folds", "3",
            "--out", out, "--no-explain", "--quiet"]
    driver = subprocess.Popen([sys.executable, "-c", CODE, *map(str, args)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while len(finished(out / "study.journal")) < 4:
        assert driver.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    workers = children_of(driver.pid)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {t.number: (t.params, t.value) for t in finished(out / "study.journal")}
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
    after = finished(out / "study.journal")
    states = sorted(t.state.name for t in trials_all(out / "study.journal"))
    assert len(after) == 24, states  # exactly the requested trials, none lost, none extra
    by_number = {t.number: (t.params, t.value) for t in after}
    for number, record in before.items():
        assert by_number[number] == record  # finished trials are kept, not recomputed
    results = json.loads(proc.stdout)
    family = results["families"]["lightgbm"]
    assert family["trials_complete"] + family["trials_pruned"] == 24 and family["trials_pruned"] > 0
    meta = json.loads((out / "best_model" / "metadata.json").read_text())
    files = saved_files(meta)
    assert files and all((out / "best_model" / f).is_file() for f in files)
    kept = json.loads((out / "oof" / "index.json").read_text())["trials"]["lightgbm"]
    complete = sorted((t for t in after if t.state.name == "COMPLETE"), key=lambda t: -t.value)
    # both runs' out-of-fold predictions, those from before the kill included: the best 20 complete trials
    assert {int(n) for n in kept} == {t.number for t in complete[:20]}


@pytest.mark.parametrize("place", ["publish", "results"])
def test_kill_9_while_writing_the_final_outputs_then_rerun(survivors_csv, tmp_path, place):
    """Killed while swapping in the model or writing results.json: the rerun trains nothing
    new, keeps every trial, and leaves a complete run directory with no half-written file."""
    out = tmp_path / "run"
    args = ["run", survivors_csv, "--target", "score", "--models", "xgboost", "--trials", "3", "--folds", "2",
            "--out", out]
    killed = subprocess.run([sys.executable, "-c", CODE, *map(str, args), "--quiet"], capture_output=True,
                            env={**os.environ, "TRIALFUSE_INJECT_FAULT": f"die:{place}"}, timeout=600)
    assert killed.returncode == 9  # os._exit(9) at the injected point: no cleanup ran, as with kill -9
    assert not (out / "results.json").exists()
    assert (place == "results") == (out / "best_model" / "metadata.json").is_file()
    before = {t.number: (t.params, t.value) for t in finished(out / "study.journal", "xgboost")}
    assert len(before) == 3

    proc = cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    after = {t.number: (t.params, t.value) for t in finished(out / "study.journal", "xgboost")}
    assert after == before  # nothing retrained in the search, nothing lost
    results = json.loads(proc.stdout)
    assert json.loads((out / "results.json").read_text()) == results
    metadata = json.loads((out / "best_model" / "metadata.json").read_text())
    assert metadata["holdout_score"] == results["holdout_score"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary leftovers


@pytest.mark.parametrize("to_group", [True, False], ids=["ctrl-c", "sigint-driver"])
def test_interrupt_exits_130_and_leaves_no_worker(survivors_csv, tmp_path, to_group):
    out = tmp_path / "run"
    args = ["run", survivors_csv, "--target", "score", "--models", "catboost", "--trials", "40", "--folds", "3",
            "--out", out, "--quiet"]
    # SIGINT as in a terminal: a shell running these tests in the background makes its children
    # ignore SIGINT, and Python keeps an inherited "ignore", so give the driver the default back
    driver = subprocess.Popen([sys.executable, "-c", CODE, *map(str, args)], stderr=subprocess.PIPE, text=True,
                              start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
    try:
        code = driver.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stack = subprocess.run(["py-spy", "dump", "--pid", str(driver.pid)], capture_output=True, text=True).stdout \
            if shutil.which("py-spy") else ""
        driver.kill()
        pytest.fail(f"the driver did not exit after SIGINT; stderr: {driver.stderr.read()[-3000:]}\n{stack}")
    assert code == 130
    assert driver.stderr.read().strip() == "trialfuse: interrupted; rerun the same command to continue"
    time.sleep(1.5)
    alive = [p for p in workers if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert alive == []
    assert not (out / "results.json").exists()


def test_a_rerun_that_would_change_the_search_is_refused_before_anything_trains(survivors_csv, tmp_path, run_main):
    """A new seed draws a new holdout that overlaps rows the old trials were tuned on: refused
    with one line and exit 2, nothing written; the same options continue the search."""
    out = tmp_path / "run"
    args = ["run", survivors_csv, "--target", "score", "--models", "lightgbm", "--folds", "3", "--out", out,
            "--quiet", "--no-ensemble", "--no-explain"]
    first = cli(*args, "--trials", "2")
    assert first.returncode == 0, first.stderr
    holdout = (out / "holdout_indices.json").read_bytes()
    other = tmp_path / "other.csv"
    other.write_text(open(survivors_csv).read().replace(",1.", ",2.", 5))
    for changed, expected in ((["--seed", "7"], "--seed 0 (now 7)"), (["--folds", "4"], "--folds 3 (now 4)"),
                              (["--holdout", "0.3"], "--holdout 0.2 (now 0.3)")):
        code, _, err = run_main(*args, "--trials", "3", *changed)  # in-process: refused before any worker starts
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "new --out" in lines[0], err
    code, _, err = run_main("run", other, *args[2:], "--trials", "3")
    assert code == 2 and "another table" in err and "how this version of trialfuse encodes them" in err, err
    assert (out / "holdout_indices.json").read_bytes() == holdout
    assert len(trials_all(out / "study.journal")) == 2  # nothing was asked or trained
    again = cli(*args, "--trials", "3")
    assert again.returncode == 0, again.stderr
    assert len(finished(out / "study.journal")) == 3
    without_k = [a for a in args if a not in ("--folds", "3", "--quiet")]  # as a search started when K's default
    again = cli(*without_k, "--trials", "4")  # was another: it goes on with its own K
    assert again.returncode == 0, again.stderr
    assert f"continuing the search in {out}: 3 trial(s) finished there" in " ".join(again.stderr.split())
    assert len(finished(out / "study.journal")) == 4
    assert json.loads((out / "results.json").read_text())["folds"] == 3


def test_a_journal_lock_left_by_a_killed_driver_holds_the_rerun_seconds_not_half_a_minute(tmp_path):
    """kill -9 while the driver held the journal's lock leaves `study.journal.lock`. Before:
    the rerun's first write waited for Optuna's 30 s grace period (the kill test took 37-42 s
    instead of 9 s whenever the kill landed there)."""
    from trialfuse.driver.storage import JOURNAL_LOCK_GRACE_SECONDS, open_storage

    journal = tmp_path / "study.journal"
    journal.touch()
    os.symlink(journal, f"{journal}.lock")  # what the killed driver's lock looks like
    started = time.monotonic()
    optuna.create_study(study_name="lightgbm", storage=open_storage(None, tmp_path))
    assert time.monotonic() - started < JOURNAL_LOCK_GRACE_SECONDS + 3

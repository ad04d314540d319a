"""Faults in the middle of a run: every trial is told once, and the run still finishes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from helpers import CLI_CODE as CODE
from helpers import cli

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out


def trials_of(out, family: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=family, storage=storage).get_trials(deepcopy=True)


def run_with_fault(survivors_csv, tmp_path, family: str, fault: str, *extra: str) -> dict:
    env = {**os.environ, "TRIALFUSE_INJECT_FAULT": fault}
    args = ["run", survivors_csv, "--target", "score", "--models", family, "--trials", "4", "--folds", "2",
            "--devices", "2", "--out", tmp_path / "run", "--json", "--no-ensemble", "--no-explain",  # one final retrain
            *extra]
    proc = subprocess.run([sys.executable, "-c", CODE, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_worker_that_dies_is_restarted_and_its_task_rerun(survivors_csv, tmp_path):
    counter = tmp_path / "deaths"
    results = run_with_fault(survivors_csv, tmp_path, "lightgbm", f"die:lightgbm:1:{counter}")
    family = results["families"]["lightgbm"]
    assert family["trials_complete"] == 4 and family["trials_failed"] == 0
    assert int(counter.read_text()) == 4 * 2 + 1 + 1  # every fold once, the one that died, the final retrain
    trials = trials_of(tmp_path / "run", "lightgbm")
    assert len(trials) == 4 and all(len(t.user_attrs["cv_score_folds"]) == 2 for t in trials)  # each fold once


def test_a_second_death_falls_back_to_a_fresh_single_task_worker(survivors_csv, tmp_path):
    counter = tmp_path / "deaths"
    results = run_with_fault(survivors_csv, tmp_path, "xgboost", f"die:xgboost:2:{counter}")
    family = results["families"]["xgboost"]
    assert family["trials_complete"] == 4 and family["trials_failed"] == 0
    assert int(counter.read_text()) == 4 * 2 + 2 + 1  # folds, two deaths, the final retrain


def test_a_garbled_line_restarts_the_worker(survivors_csv, tmp_path):
    counter = tmp_path / "garbles"
    results = run_with_fault(survivors_csv, tmp_path, "lightgbm", f"garble:lightgbm:1:{counter}")
    assert results["families"]["lightgbm"]["trials_complete"] == 4
    assert int(counter.read_text()) == 4 * 2 + 1 + 1  # folds, the garbled answer, the final retrain


def test_a_hung_job_times_out_and_fails_only_its_trial(survivors_csv, tmp_path):
    counter = tmp_path / "hangs"
    started = time.monotonic()
    results = run_with_fault(survivors_csv, tmp_path, "lightgbm", f"hang:lightgbm:1:{counter}", "--job-timeout", "5s")
    assert time.monotonic() - started < 120
    family = results["families"]["lightgbm"]
    assert family["trials_failed"] == 1 and family["trials_complete"] == 3
    failed = [t for t in trials_of(tmp_path / "run", "lightgbm") if t.state == optuna.trial.TrialState.FAIL]
    assert "timed out" in failed[0].user_attrs["fail_reason"]
    rerun = run_with_fault(survivors_csv, tmp_path, "lightgbm", "none")  # the clock failed it: asked again, once
    assert rerun["families"]["lightgbm"]["trials_complete"] == 4 and rerun["families"]["lightgbm"]["trials_failed"] == 0
    retried = [t for t in trials_of(tmp_path / "run", "lightgbm") if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params


def _cpu_seconds_in(pid: int, seconds: float) -> float:
    """CPU seconds process `pid` used over the next `seconds` (user + system, all threads)."""
    def used() -> float:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = used()
    time.sleep(seconds)
    return used() - before


def test_kill_9_of_a_worker_mid_run(survivors_csv, tmp_path):
    out = tmp_path / "run"
    args = ["run", survivors_csv, "--target", "score", "--models", "catboost", "--trials", "4", "--folds", "2",
            "--devices", "2", "--out", out, "--json", "--no-prune", "--no-explain"]  # every trial runs to the end
    driver = subprocess.Popen([sys.executable, "-c", CODE, *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        ps = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(driver.pid)], capture_output=True, text=True)
        workers = [int(line.split()[0]) for line in ps.stdout.splitlines() if "worker" in line]
        if len(workers) == 2 and (out / "study.journal").exists():
            break
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.2)
    while _cpu_seconds_in(workers[0], 0.5) < 0.2:  # the kill must hit a task, not an idle worker
        assert time.monotonic() < deadline and driver.poll() is None
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr
    family = json.loads(stdout)["families"]["catboost"]
    assert family["trials_complete"] == 4 and family["trials_failed"] == 0
    trials = trials_of(out, "catboost")
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_two_cpu_workers_run_a_study_as_two_devices(survivors_csv, tmp_path):
    proc = cli("run", survivors_csv, "--target", "score", "--models", "nn,xgboost", "--trials", "4", "--folds", "2",
               "--devices", "2", "--out", tmp_path / "run", "--json", "--no-explain")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["workers"] == 2 and results["device"] == "cpu x 2"
    assert all(f["trials_complete"] == 4 for f in results["families"].values())


def test_a_damaged_run_directory_is_one_line_not_a_traceback(family_run, survivors_csv, tmp_path):
    """A results.json cut short, a metadata.json edited badly, a model file missing: report,
    explain and predict ended in JSONDecodeError or LightGBMError tracebacks, exit code 1."""
    import shutil

    from trialfuse.engine.saved_model import files

    run = shutil.copytree(family_run("lightgbm")[0], tmp_path / "run")
    (run / "results.json").write_text((run / "results.json").read_text()[:50])
    for command in (("report", run), ("explain", run)):
        proc = cli(*command)
        assert proc.returncode == 2 and "results.json is damaged (" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    metadata = run / "best_model" / "metadata.json"
    saved = metadata.read_text()
    metadata.write_text(saved[:-40])
    proc = cli("predict", run, survivors_csv)
    assert proc.returncode == 2 and "metadata.json is damaged (" in proc.stderr and "Traceback" not in proc.stderr
    metadata.write_text(saved)
    first = files(json.loads(saved))[0]
    (run / "best_model" / first).unlink()
    proc = cli("predict", run, survivors_csv)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"lacks {first}" in proc.stderr and "damaged or partly copied" in proc.stderr

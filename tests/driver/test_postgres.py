"""Several drivers share one study through PostgreSQL: N trials in total, none duplicated or lost.

The test starts its own PostgreSQL server (Debian's package) on a free port in a private
directory and stops it afterwards; it skips, saying why, only where none is installed.
"""
from __future__ import annotations

import glob
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from helpers import CLI_CODE as CODE
from trialfuse.driver.trial_records import counting

pytestmark = pytest.mark.slow  # a PostgreSQL server and whole runs: `pytest -m "not slow"` leaves them out


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server():
    """(URL, server log) of a private PostgreSQL server for this module's tests."""
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
        yield f"postgresql+psycopg2://trialfuse@127.0.0.1:{port}/postgres", home / "log"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url(postgres_server):
    return postgres_server[0]


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
    assert all(len(t.user_attrs["cv_score_folds"]) <= 2 for t in counted)  # each trial's folds judged once
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]  # none lost in flight
    assert len({t.user_attrs["driver"] for t in counted}) == 2  # both drivers did part of the work
    for out, _ in outputs:  # each driver compares on the shared study and saves the same winner
        results = json.loads(out)
        assert results["families"]["lightgbm"]["trials_complete"] + results["families"]["lightgbm"][
            "trials_pruned"] == n


RACE_DATABASES = 16  # fresh databases, each opened by RACE_DRIVERS processes at the same instant
RACE_DRIVERS = 8
STAGGER_SECONDS = 0.25  # about the time one driver takes to create Optuna's tables: every interleaving occurs


def _open_at_barrier(urls: list[str], barrier, answers) -> None:
    """One driver: for each fresh database, wait for the others, then open it (what `run --storage` does)."""
    from trialfuse.driver.storage import open_storage
    from trialfuse.errors import UserError

    for url in urls:
        barrier.wait(timeout=120)
        time.sleep(random.uniform(0, STAGGER_SECONDS))  # spread over the creator's DDL: hits every window
        try:
            open_storage(url, Path(tempfile.gettempdir()))
            answers.put((url, "ok"))
        except UserError as exc:
            answers.put((url, str(exc)))


def _create_databases(postgres_url: str, names: list[str]) -> list[str]:
    import psycopg2

    connection = psycopg2.connect(postgres_url.replace("postgresql+psycopg2", "postgresql"))
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return [postgres_url.rsplit("/", 1)[0] + f"/{name}" for name in names]


def test_drivers_opening_a_fresh_database_at_the_same_instant_all_succeed(postgres_server):
    """Without a lock around table creation, 8 drivers on 16 fresh databases lose the race
    (DuplicateTable, DuplicateObject or a unique violation) on several of them in every run."""
    import multiprocessing

    import sqlalchemy

    postgres_url, server_log = postgres_server
    log_start = server_log.stat().st_size
    names = [f"race_{os.getpid()}_{i}" for i in range(RACE_DATABASES)]
    urls = _create_databases(postgres_url, names)
    context = multiprocessing.get_context("spawn")  # a clean interpreter each, as separate drivers are
    barrier, answers = context.Barrier(RACE_DRIVERS), context.Queue()
    drivers = [context.Process(target=_open_at_barrier, args=(urls, barrier, answers)) for _ in range(RACE_DRIVERS)]
    for driver in drivers:
        driver.start()
    results = [answers.get(timeout=300) for _ in range(RACE_DATABASES * RACE_DRIVERS)]
    for driver in drivers:
        driver.join(timeout=60)
    failures = [(url.rsplit("/", 1)[1], answer) for url, answer in results if answer != "ok"]
    assert not failures, f"{len(failures)} of {len(results)} openings failed: {failures[:3]}"
    for url in urls:  # one schema, stamped once, whoever created it
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT count(*) FROM alembic_version")).scalar() == 1
            assert connection.execute(sqlalchemy.text("SELECT count(*) FROM version_info")).scalar() == 1
        engine.dispose()
    with open(server_log) as log:  # no driver even saw an error: none was retried away
        log.seek(log_start)
        errors = [line.strip() for line in log if "ERROR:" in line]
    assert not errors, f"{len(errors)} errors in the server log, e.g. {errors[:3]}"


def _running_trials_of(postgres_url: str, pid: int) -> int:
    try:
        study = optuna.load_study(study_name="lightgbm", storage=postgres_url)
    except KeyError:
        return 0
    return sum(t.user_attrs.get("driver", "").endswith(f":{pid}")
               for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def test_kill_9_of_one_of_two_drivers_the_survivor_finishes_exactly_n_trials(survivors_csv, tmp_path,
                                                                               postgres_server):
    """Two drivers share a study; one dies right after asking its first trials, before its
    heartbeat thread's first beat: its trials are found orphaned, asked again once and run
    by the survivor (after its own asking ended, if need be), which ends with exactly
    `--trials` finished trials, none lost, none run twice. Before: the orphans stayed RUNNING
    for ever (no heartbeat row is never stale) and the survivor waited for them for ever."""
    base_url, _ = postgres_server
    url = _create_databases(base_url, [f"kill_{os.getpid()}"])[0]
    n = 8
    env = {**os.environ, "TRIALFUSE_HEARTBEAT_SECONDS": "2"}

    def driver(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", CODE, "run", str(survivors_csv), "--target", "score",
                                 "--models", "lightgbm", "--trials", str(n), "--folds", "2", "--devices", "1",
                                 "--storage", url, "--out", str(tmp_path / name), "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    doomed, survivor = driver("doomed"), driver("survivor")
    deadline = time.monotonic() + 120
    while _running_trials_of(url, doomed.pid) == 0:
        assert doomed.poll() is None and time.monotonic() < deadline, "the driver ended before it could be killed"
        time.sleep(0.02)
    os.killpg(doomed.pid, 9)  # the driver and its workers, before its first heartbeat thread beat
    doomed.wait()
    orphans = _running_trials_of(url, doomed.pid)
    assert orphans >= 1
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err
    trials = optuna.load_study(study_name="lightgbm", storage=url).get_trials(deepcopy=False)
    counted = counting(trials)
    assert len(counted) == n and all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
                                     for t in counted)
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    dead = [t for t in trials if t.user_attrs.get("driver", "").endswith(f":{doomed.pid}")]
    assert len(dead) >= orphans and all(t.state == optuna.trial.TrialState.FAIL for t in dead)
    retries = sorted(t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs)
    assert retries == sorted(t.number for t in dead if t.params)  # each orphan that had params asked again once
    family = json.loads(out)["families"]["lightgbm"]
    assert family["trials_complete"] + family["trials_pruned"] == n


def test_a_heartbeat_that_hits_a_database_error_beats_on(monkeypatch):
    """Before: the first error ended the heartbeat thread, and another driver then failed
    this live driver's trials as orphans."""
    from trialfuse.driver import storage

    class FlakyStorage:
        def __init__(self):
            self.beats = 0

        def get_heartbeat_interval(self):
            return 0.02

        def record_heartbeat(self, trial_id):
            self.beats += 1
            if self.beats == 1:
                raise ConnectionError("server closed the connection unexpectedly")

    class Trial:
        _trial_id = 1

    flaky = FlakyStorage()
    monkeypatch.setattr(storage, "_storage", lambda study: flaky)
    heartbeat = storage.Heartbeat(object(), lambda: [Trial()])
    deadline = time.monotonic() + 10
    while flaky.beats < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    heartbeat.stop()
    assert flaky.beats >= 4


def test_a_trial_asked_but_never_claimed_is_failed_after_the_grace_period(tmp_path, monkeypatch):
    """A driver killed between asking a trial and its first heartbeat. Before: the trial had
    no heartbeat, Optuna never judged it stale, and every other driver waited for it for ever
    (the kill test above hung 1 run in 7 when the kill fell in that window)."""
    from trialfuse.driver import storage

    monkeypatch.setenv(storage.HEARTBEAT_ENV, "1")  # grace period: 3 s
    study = optuna.create_study(study_name="lightgbm",
                                storage=storage.open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path))
    unclaimed = study.ask()  # the dead driver's: asked, never claimed
    claimed = study.ask()  # a live driver's
    storage.claim(study, claimed)
    beating = storage.Heartbeat(study, lambda: [claimed])
    storage.fail_stale_trials(study)  # younger than the grace period: both may still be claimed
    running, failed = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {unclaimed.number: running, claimed.number: running}
    time.sleep(3.5)
    storage.fail_stale_trials(study)
    beating.stop()
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {unclaimed.number: failed, claimed.number: running}

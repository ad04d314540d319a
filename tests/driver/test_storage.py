"""The storage stage of a run: one driver at a time on a journal file, a run refused there
leaves no folder behind, a database driver that is missing is named in one line, and
Optuna's heartbeat warnings that this driver knowingly triggers are not shown."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings

import optuna
import pytest

from helpers import cli
from trialfuse.driver import fingerprint, storage
from trialfuse.errors import UserError

RUN = ("--target", "score", "--models", "lightgbm", "--trials", "1", "--folds", "2", "--no-explain", "-q")
HOLD = ("import sys; from pathlib import Path; from trialfuse.driver.journal_lock import sole_driver\n"
        "with sole_driver(sys.argv[1], Path(sys.argv[2])):\n    print('held', flush=True); sys.stdin.read()")


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_a_second_driver_on_a_live_journal_is_refused_and_leaves_the_first_ones_trials_running(survivors_csv,
                                                                                                 tmp_path):
    """Before: the second driver took the live one's RUNNING trials for a killed driver's
    orphans and failed them ("trial N was ended by another driver (heartbeat lost)")."""
    journal = tmp_path / "shared.journal"
    study = optuna.create_study(study_name="lightgbm", storage=storage.open_storage(str(journal), tmp_path))
    running = study.ask()  # the live driver's trial, mid-training
    live = subprocess.Popen([sys.executable, "-c", HOLD, str(journal), str(tmp_path / "first")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "held"
        second = cli("run", survivors_csv, *RUN, "--storage", journal, "--out", tmp_path / "second")
        assert second.returncode == 2
        assert len(_error_lines(second)) == 1 and "another driver" in second.stderr and f":{live.pid})" in second.stderr
        assert "database" in second.stderr  # what to do to share a study
        assert study.trials[running.number].state == optuna.trial.TrialState.RUNNING
        assert "orphaned" not in study.trials[running.number].user_attrs
        assert not (tmp_path / "second").exists()
    finally:
        os.kill(live.pid, signal.SIGKILL)  # as kill -9 of a driver: the OS releases its lock
        live.wait()
    from trialfuse.driver.journal_lock import sole_driver

    with sole_driver(str(journal), tmp_path):  # a rerun after the kill holds it at once
        pass


def test_the_same_process_cannot_hold_one_journal_twice_and_releases_it_at_the_end(tmp_path):
    from trialfuse.driver.journal_lock import lock_file, sole_driver
    from trialfuse.errors import UserError

    with sole_driver(None, tmp_path):
        with pytest.raises(UserError, match="another driver"), sole_driver(None, tmp_path):
            pass
    assert not lock_file(tmp_path / "study.journal").exists()  # an ended driver leaves no file behind
    with sole_driver(None, tmp_path), sole_driver("sqlite:///x.db", tmp_path):  # a database takes no lock
        pass


def test_a_journal_that_cannot_be_locked_or_written_beside_is_one_line(tmp_path, monkeypatch):
    """A file system without locks (NFS without its lock daemon) or a folder that cannot be made:
    tracebacks, and the lock's descriptor left open."""
    import errno
    import fcntl

    from trialfuse.driver.journal_lock import sole_driver
    from trialfuse.errors import UserError

    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="^--storage .*x.journal: cannot write beside its journal"), \
            sole_driver(str(tmp_path / "file" / "x.journal"), tmp_path):
        pass
    open_before = len(os.listdir("/proc/self/fd"))

    def no_locks(handle, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(UserError, match="cannot lock .*No locks available.*a file system with locks"), \
            sole_driver(None, tmp_path):
        pass
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_a_refused_run_removes_only_empty_folders_it_made(tmp_path, monkeypatch):
    """It removed the highest folder it had made, whole: another run's folder that appeared beside
    its own under a new runs/ (or exp/new/) meanwhile went with it."""
    from trialfuse.driver import run_dir
    from trialfuse.errors import UserError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError), run_dir.made_unless_refused(None) as mine:
        other = run_dir.new_run_dir()  # a run started meanwhile
        (other / "results.json").write_text("{}")
        raise UserError("refused")
    assert not mine.exists() and (other / "results.json").is_file()
    with pytest.raises(UserError), run_dir.made_unless_refused(tmp_path / "exp" / "new" / "a"):
        (tmp_path / "exp" / "new" / "b").mkdir()
        (tmp_path / "exp" / "new" / "b" / "kept").write_text("")
        raise UserError("refused")
    assert not (tmp_path / "exp" / "new" / "a").exists() and (tmp_path / "exp" / "new" / "b" / "kept").is_file()
    with pytest.raises(UserError), run_dir.made_unless_refused(tmp_path / "fresh" / "run"):
        raise UserError("refused")
    assert not (tmp_path / "fresh").exists()


def test_a_run_refused_at_the_storage_stage_leaves_no_folder_it_made(survivors_csv, tmp_path):
    """Before: a refused run left its --out, empty (and the parents it made)."""
    other = tmp_path / "other.journal"  # another search's study: made with seed 7
    fingerprint.stamp(storage.open_storage(str(other), tmp_path), ["lightgbm"], {"seed": 7})
    for store in (str(other), f"sqlite:///{tmp_path / 'missing' / 'study.db'}", "mysql+pymysql://u@127.0.0.1:1/db"):
        out = tmp_path / "new" / "run"
        result = cli("run", survivors_csv, *RUN, "--storage", store, "--out", out)
        assert result.returncode == 2 and len(_error_lines(result)) == 1, result.stderr
        assert not (tmp_path / "new").exists(), store
    mine = tmp_path / "mine"  # a folder the user made is never removed
    mine.mkdir()
    result = cli("run", survivors_csv, *RUN, "--storage", str(other), "--out", mine)
    assert result.returncode == 2 and mine.is_dir()


def test_a_missing_database_driver_is_one_line_naming_what_to_install(survivors_csv, tmp_path, monkeypatch):
    """Before: "No module named 'psycopg'" (SQLAlchemy 2.1's default driver for postgresql://,
    where the postgres extra installs psycopg2)."""
    from trialfuse.errors import UserError

    if storage._installed("psycopg2"):  # postgresql:// uses the driver that is installed
        with pytest.raises(UserError) as refused:
            storage._open_database("postgresql://u@127.0.0.1:1/db")
        assert "No module named" not in str(refused.value) and "127.0.0.1" in str(refused.value)
    monkeypatch.setattr(storage, "_installed", lambda module: False)
    with pytest.raises(UserError, match=r"no postgresql database driver .*: pip install 'trialfuse\[postgres\]'"):
        storage._open_database("postgresql://u:secret@127.0.0.1:1/db")
    with pytest.raises(UserError, match="no mysql database driver is installed: pip install pymysql"):
        storage._open_database("mysql://u@127.0.0.1:1/db")
    result = cli("run", survivors_csv, *RUN, "--storage", "postgresql://u:secret@127.0.0.1:1/db",
                 "--out", tmp_path / "run")
    assert result.returncode == 2 and len(_error_lines(result)) == 1 and "secret" not in result.stderr
    assert "pip install 'trialfuse[postgres]'" in result.stderr and not (tmp_path / "run").exists()


def test_the_heartbeat_warnings_optuna_gives_for_asking_outside_optimize_are_not_shown(tmp_path):
    """Before: every driver on a database printed Optuna's ExperimentalWarning for
    fail_stale_trials and "Heartbeat of storage is supposed to be used with Study.optimize."."""
    study = optuna.create_study(study_name="lightgbm",
                                storage=storage.open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trial = storage.ask(study, 0, tmp_path)
        storage.fail_stale_trials(study)
        warnings.warn("a warning of our own", UserWarning, stacklevel=1)  # only those two are silenced
    assert [str(w.message) for w in seen] == ["a warning of our own"]
    assert trial.user_attrs == {"draw": 0, "driver": storage.DRIVER, storage.RUN_DIR: str(tmp_path.resolve())}


def test_a_sqlite_url_of_three_slashes_to_a_folder_from_the_root_says_four(tmp_path, monkeypatch):
    """A new user's `sqlite:///tmp/probe/shared.db`: "there is no folder tmp/probe" (relative), and no word of why."""
    monkeypatch.chdir(tmp_path)
    relative = str(tmp_path / "shared.db").lstrip("/")
    with pytest.raises(UserError, match=f"four slashes: sqlite:////{relative}"):
        storage.open_storage(f"sqlite:///{relative}", tmp_path)

"""The Optuna storage a run keeps its studies in: the run directory's journal file by
default (one driver), or a database URL that several drivers on several hosts share;
and what keeps a shared study whole when a driver dies: heartbeats, orphaned trials
failed and asked again once, drivers waiting for each other before they compare."""
from __future__ import annotations

import importlib.util
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import optuna
import sqlalchemy

from trialfuse.driver import run_dir
from trialfuse.errors import UserError
from trialfuse.seeds import model_seed, seeded_as
from trialfuse.transport.protocol import TIMED_OUT

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 20  # database storage: a trial with no heartbeat for 3 of these is an orphan
HEARTBEAT_ENV = "TRIALFUSE_HEARTBEAT_SECONDS"  # another interval (tests: a killed driver found in seconds)
GRACE_BEATS = 3  # heartbeats missed in a row before a trial is an orphan
# A journal lock untouched this long was left by a killed driver (a live one holds it for
# milliseconds a write); Optuna's default, 30 s, made a rerun after kill -9 wait that long.
JOURNAL_LOCK_GRACE_SECONDS = 5
DRIVER = f"{socket.gethostname()}:{os.getpid()}"  # which driver ran a trial, when several share a study
RUN_DIR = "run_dir"  # the trial attribute naming the run directory of the driver that trained it
CREATE_ATTEMPTS = 4
LOCK_WAIT_SECONDS = 120  # how long a driver waits for another to finish creating the tables
SCHEMA_LOCK_KEY = 0x747269616C66  # "trialf": the advisory lock every trialfuse driver takes to create the schema
SCHEMA_LOCKS = {  # dialect: (statements that take it, the one that releases it); held by the session
    "postgresql": ((f"SELECT set_config('lock_timeout', '{LOCK_WAIT_SECONDS}s', false)",
                    f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})"),
                   f"SELECT pg_advisory_unlock({SCHEMA_LOCK_KEY})"),
    "mysql": ((f"SELECT GET_LOCK('trialfuse_schema', {LOCK_WAIT_SECONDS})",),  # 0 when the wait ran out
              "SELECT RELEASE_LOCK('trialfuse_schema')"),
}
SCHEMA_LOCKS["mariadb"] = SCHEMA_LOCKS["mysql"]
# The race's errors: PostgreSQL's SQLSTATEs unique_violation, duplicate_table, duplicate_object
# (Optuna's enum types); MySQL's ER_DUP_ENTRY and ER_TABLE_EXISTS_ERROR.
RACE_ERROR_CODES = {"23505", "42P07", "42710", 1062, 1050}


def journal_path(url: str | None, out: Path) -> Path | None:
    """The journal file `--storage` names (None: the run directory's); None for a database URL."""
    if url and "://" in url:
        return None
    return Path(url) if url else out / run_dir.JOURNAL


def open_storage(url: str | None, out: Path) -> optuna.storages.BaseStorage:
    """A real Optuna storage: the run's journal file by default, any Optuna URL if given."""
    path = journal_path(url, out)
    if path is None:
        return _open_database(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(path), grace_period=JOURNAL_LOCK_GRACE_SECONDS)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path), lock_obj=lock))


def shown(url: str) -> str:
    """The storage as a screen may show it: a database URL with its password masked (SQLAlchemy's
    own rendering), a journal file's path as it is."""
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url


def _open_database(url: str) -> optuna.storages.RDBStorage:
    """A database several drivers share; a driver's trials whose heartbeat stops are asked again."""
    given = url
    try:
        url = with_installed_driver(url)
    except sqlalchemy.exc.ArgumentError as exc:  # not a URL SQLAlchemy can read
        raise UserError(f"cannot open --storage {given}: {exc}") from None
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).parent.is_dir():
        folder = Path(parsed.database).parent
        absolute = (f" (a path from the root takes four slashes: sqlite:////{parsed.database})"
                    if not folder.is_absolute() and (Path("/") / folder).is_dir() else "")
        raise UserError(f"--storage {given}: there is no folder {folder} to hold it: create it first, or name a "
                        f"file in a folder that exists{absolute}")
    attempt = 0
    while True:
        try:
            with _schema_lock(url), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat; knowingly
                interval = int(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_SECONDS))
                return optuna.storages.RDBStorage(url, heartbeat_interval=interval, grace_period=GRACE_BEATS * interval,
                                                  heartbeat_stale_trial_callback=retry_once)
        except ModuleNotFoundError as exc:
            raise UserError(f"--storage {shown(given)}: its database driver ({exc.name}) is not installed: "
                            f"{INSTALL.get(exc.name or '', f'pip install {exc.name}')}") from None
        except Exception as exc:
            attempt += 1
            if attempt == CREATE_ATTEMPTS or not _lost_creation_race(exc):
                raise UserError(f"cannot open --storage {shown(given)}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5 * attempt)


# What to install for a database driver module SQLAlchemy could not import; and for a URL that
# names no driver, the ones it may use, SQLAlchemy's default first: SQLAlchemy 2.1 made psycopg
# (3) the default for postgresql://, where the `postgres` extra installs psycopg2.
POSTGRES_EXTRA = "pip install 'trialfuse[postgres]'"
INSTALL = {"psycopg2": POSTGRES_EXTRA,
           "psycopg": f"pip install 'psycopg[binary]', or write postgresql+psycopg2:// after {POSTGRES_EXTRA}",
           "MySQLdb": "pip install mysqlclient, or pymysql and write mysql+pymysql://",
           "pymysql": "pip install pymysql"}
DRIVERS = {"postgresql": {"psycopg": "psycopg", "psycopg2": "psycopg2"},
           "mysql": {"mysqldb": "MySQLdb", "pymysql": "pymysql"}}
NO_DRIVER = {"postgresql": POSTGRES_EXTRA, "mysql": "pip install pymysql (or mysqlclient)"}


def with_installed_driver(url: str) -> str:
    """`url` with a driver that is installed where it names none (postgresql://, mysql://) and
    SQLAlchemy's default is not; refused in one line where the dialect has none installed."""
    parsed = sqlalchemy.engine.make_url(url)
    drivers = DRIVERS.get(parsed.drivername)
    if drivers is None:  # a driver named (postgresql+psycopg2://), or a dialect that needs none (sqlite)
        return url
    default = parsed.get_dialect().driver
    installed = [d for d, module in sorted(drivers.items(), key=lambda d: d[0] != default) if _installed(module)]
    if not installed:
        raise UserError(f"--storage {shown(url)}: no {parsed.drivername} database driver is installed: "
                        f"{NO_DRIVER[parsed.drivername]}")
    return url if installed[0] == default else parsed.set(drivername=f"{parsed.drivername}+{installed[0]}") \
        .render_as_string(hide_password=False)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Drivers started together on an empty database would race to create Optuna's tables
    (the losers see DuplicateTable, DuplicateObject or a unique violation, depending on how
    they interleave). Under a database-wide lock one driver creates them and the others wait,
    then find them there, so no driver sees an error. PostgreSQL and MySQL have such a lock;
    SQLite is one file for one driver at a time (Optuna advises against sharing it), so it
    takes none."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        lock = SCHEMA_LOCKS.get(engine.dialect.name)
        if lock is None:
            yield
            return
        take, release = lock
        with engine.connect() as connection:
            if [connection.execute(sqlalchemy.text(statement)).scalar() for statement in take][-1] == 0:
                raise TimeoutError(f"another driver held the table-creation lock for {LOCK_WAIT_SECONDS} s")
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(release))
    finally:
        engine.dispose()


def _lost_creation_race(exc: Exception) -> bool:
    """True for the errors of a table-creation race, told by the database's error code (not its
    message): a client that takes no lock (a plain Optuna script) may still create the tables
    while we do, and opening again then finds them."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)  # psycopg2, psycopg 3
    if code is None and orig is not None and orig.args and isinstance(orig.args[0], int):
        code = orig.args[0]  # MySQL drivers: the server's error number
    return code in RACE_ERROR_CODES


def retry_once(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A trial whose driver died: ask its params again, once (it no longer counts; its retry does);
    not where its retry waits in the queue already (a wide table's screened first trial's, queued at once)."""
    if "retry_of" in trial.user_attrs or not trial.params or trial.number in queued_retries(study):
        return
    queue_retry(study, trial)


def queue_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial) -> None:
    """Queue the trial's settings once more as its retry (`retry_of`): in its place (its `draw`),
    so seeded as it was (seeds.seeded_as), and the one of the two that counts toward the trial budget."""
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number,
                                                  "draw": seeded_as(trial.number, trial.user_attrs)},
                        skip_if_exists=False)


def sampler(seed: int, draw: int) -> optuna.samplers.TPESampler:
    """The sampler that asks a study's `draw`-th new trial: TPE reads the study's history from
    storage (its own state is its random state and a cache of the search space, rebuilt from the
    history: 12 ms at 3,000 trials), so seeding it by the run seed and the draw makes each draw
    follow from the history alone; a rerun after a stop asks what the stopped run would have
    next, not its first draws again. Constant liar: running trials count as bad, so trials
    asked at once differ."""
    return optuna.samplers.TPESampler(seed=model_seed(seed, draw), constant_liar=True, multivariate=True)


def first_askings(study: optuna.Study, before: int | None = None) -> int:
    """How many of the study's trials (numbered `before` this one) were asked for the first time,
    not as a retry, and are not still queued: the place, or draw, of a new one."""
    trials = study.get_trials(deepcopy=False)
    return sum(t.state != optuna.trial.TrialState.WAITING and "retry_of" not in t.user_attrs
               and (before is None or t.number < before) for t in trials)


def queued_retries(study: optuna.Study) -> set[int]:
    """The trials whose retry waits in the queue."""
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return {t.user_attrs["retry_of"] for t in waiting if "retry_of" in t.user_attrs}


def recover_orphans(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed driver are failed and asked again, once.

    With a database shared by several drivers, only trials whose heartbeat stopped are
    orphans (Optuna's heartbeat, with `retry_once` as its stale-trial callback); with the
    run directory's journal there is one driver, so every RUNNING trial is one.
    """
    if keeps_heartbeats(study):
        fail_stale_trials(study)
        return
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        _storage(study).set_trial_user_attr(_trial_id(trial), "orphaned", True)  # never counts, even without params
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        retry_once(study, trial)


def retry_timed_out(study: optuna.Study) -> None:
    """Trials whose worker `--job-timeout` killed are asked again, once, by the next run (which
    may allow longer), as it starts: the clock failed them, not their settings, so their retry
    counts toward `--trials`, not they (a rerun with a longer `--job-timeout` had nothing left to
    train). Not on a database other drivers share: one of them may be running them now, and two
    starting at once would both queue each."""
    if keeps_heartbeats(study):
        return
    trials = study.get_trials(deepcopy=False)
    asked_again = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.state == optuna.trial.TrialState.FAIL and trial.params \
                and str(trial.user_attrs.get("fail_reason", "")).startswith(TIMED_OUT) \
                and "retry_of" not in trial.user_attrs and trial.number not in asked_again:
            queue_retry(study, trial)


class Held(NamedTuple):
    """What a rerun finds in its studies: trials finished, and trials cut short (by the budget,
    Ctrl-C, a driver that died or a job timeout) queued to be trained again with their first seed
    (seeds.seeded_as)."""

    finished: int
    again: int


def held_for_rerun(storage: optuna.storages.BaseStorage, families: list[str]) -> Held:
    """The trials these families' studies hold for this run, once the orphans of a killed driver
    and the trials a job timeout failed are queued again (`recover_orphans`, `retry_timed_out`;
    their search would do it as it starts)."""
    finished, again = 0, 0
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    for family in families:
        if family not in names:
            continue
        study = optuna.load_study(study_name=family, storage=storage)
        recover_orphans(study)
        retry_timed_out(study)
        trials = study.get_trials(deepcopy=False)
        finished += sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
        again += sum(t.state == optuna.trial.TrialState.WAITING and "retry_of" in t.user_attrs for t in trials)
    return Held(finished, again)


def keeps_heartbeats(study: optuna.Study) -> bool:
    """True for a storage with heartbeats (a shared database), where only stale trials are orphans."""
    return bool(getattr(_storage(study), "get_heartbeat_interval", lambda: None)())


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and, through `retry_once`, ask again) the trials of drivers whose heartbeat
    stopped, and those no driver claimed in time (see `claim`)."""
    with warnings.catch_warnings():  # experimental since Optuna 2.9, and what this driver relies on: knowingly
        warnings.filterwarnings("ignore", message=r"optuna\.storages\._heartbeat\.fail_stale_trials is experimental",
                                category=optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    storage = _storage(study)
    cutoff = datetime.now() - timedelta(seconds=GRACE_BEATS * storage.get_heartbeat_interval())
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "driver" not in trial.user_attrs and trial.datetime_start is not None and trial.datetime_start < cutoff:
            try:
                if storage.set_trial_state_values(_trial_id(trial), state=optuna.trial.TrialState.FAIL):
                    retry_once(study, trial)  # only the driver whose FAIL landed asks it again
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another driver failed it first


def ask(study: optuna.Study, seed: int, run: Path | None = None) -> optuna.Trial:
    """The study's next trial, claimed by this driver (`claim`): the oldest queued one, else a new
    one, whose place (its `draw`, seeds.seeded_as: the first askings numbered before it) seeds the
    sampler that draws its settings (`sampler`; Optuna samples at the first suggest, after this).
    Optuna warns that heartbeats are meant for Study.optimize; this driver beats for its trials
    itself (`Heartbeat`), so that one warning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize",
                                category=UserWarning)
        trial = study.ask()
    if "retry_of" not in trial.user_attrs:  # a retry keeps the place of the trial it repeats
        trial.set_user_attr("draw", first_askings(study, before=trial.number))  # drivers racing: numbers differ
    study.sampler = sampler(seed, seeded_as(trial.number, trial.user_attrs))
    claim(study, trial, run)
    return trial


def claim(study: optuna.Study, trial: optuna.Trial, run: Path | None = None) -> None:
    """This driver's first heartbeat for a trial just asked, then its name on it.

    Optuna judges only a trial with a heartbeat stale, so a driver killed between asking a
    trial and its first beat would leave it RUNNING for ever, and every other driver waiting
    for it. A live driver claims a trial milliseconds after asking it, so `fail_stale_trials`
    also takes an unclaimed trial older than the grace period for an orphan (its start time
    is the asking host's clock: hosts sharing a study keep their clocks within seconds).
    """
    if keeps_heartbeats(study):
        _storage(study).record_heartbeat(_trial_id(trial))
    trial.set_user_attr("driver", DRIVER)
    if run is not None:  # where its kept predictions and fold models lie (final_model: another driver's)
        trial.set_user_attr(RUN_DIR, str(run.resolve()))


class Heartbeat:
    """Tells a shared database, every interval, that this driver's running trials are alive;
    does nothing on a storage without heartbeats. A database error skips one beat, never
    ends the beating (three missed in a row and another driver takes the trials over)."""

    def __init__(self, study: optuna.Study, running: Callable[[], list[optuna.Trial]]):
        self._stopped = threading.Event()
        if keeps_heartbeats(study):
            threading.Thread(target=self._beat, args=(study, running), daemon=True).start()

    def _beat(self, study: optuna.Study, running: Callable[[], list[optuna.Trial]]) -> None:
        interval = _storage(study).get_heartbeat_interval()
        while not self._stopped.wait(interval):
            try:
                for trial in running():
                    _storage(study).record_heartbeat(_trial_id(trial))
            except Exception as exc:  # the connection dropped, the server restarted: try again next beat
                log.warning("heartbeat failed (%s); trying again in %s s", str(exc).splitlines()[0], interval)

    def stop(self) -> None:
        self._stopped.set()


def wait_for_other_drivers(study: optuna.Study) -> None:
    """On a shared database, compare only once the other drivers' trials are told (or found
    orphaned by their stopped heartbeat), so every driver ranks the same finished study."""
    running = optuna.trial.TrialState.RUNNING
    while keeps_heartbeats(study) and study.get_trials(deepcopy=False, states=(running,)):
        time.sleep(1.0)
        fail_stale_trials(study)


# Optuna's private API, used here and nowhere else: a Study has no public accessor for its
# storage, nor a trial for its storage id, and recording a heartbeat or marking an orphan
# needs both (Optuna's own fail_stale_trials reads them the same way).
def _storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def _trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    return trial._trial_id


def complete_scores(storage: optuna.storages.BaseStorage, families: list[str]) -> dict[str, dict[int, float]]:
    """Each family's complete trials and their scores: what a kept out-of-fold vector must be of."""
    return {family: {t.number: float(t.value) for t in trials}
            for family, trials in _trials_in(storage, families, optuna.trial.TrialState.COMPLETE).items()}


def running_trials(storage: optuna.storages.BaseStorage, families: list[str]) -> set[str]:
    """"<family>-<trial>" of every trial still running in the families' studies (another
    driver's, on a shared storage): files named after them are not leftovers."""
    return {f"{family}-{t.number}"
            for family, trials in _trials_in(storage, families, optuna.trial.TrialState.RUNNING).items()
            for t in trials}


def _trials_in(storage: optuna.storages.BaseStorage, families: list[str],
               state: optuna.trial.TrialState) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """The trials in `state` of each family whose study the storage holds."""
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    return {family: optuna.load_study(study_name=family, storage=storage).get_trials(deepcopy=False, states=(state,))
            for family in families if family in names}

"""The worker protocol: what the driver and a device worker say to each other.

The contract, for every transport (subprocess over JSON lines today, Ray actors next):
- A worker first says `{"status": "ready", "device": ...}`. Then each command gets its
  answers in order, one per job for `train_batch`, one otherwise; nothing else is written.
- `load_dataset` makes a table and its K folds resident (an NPZ with X and y, folds as
  row indices, and its `task`: numbers, or y as class codes; see trialfuse.task); jobs then
  name a fold by index and never ship rows. The driver owns the
  folds: a worker only indexes what it was given.
- `train_batch` trains jobs (one fold of one trial each); NN jobs may train together as
  one fused model, tree jobs one by one. `fuse` says how (see `trialfuse.fuse.Fuse`).
- `retrain` trains on all resident rows (or a seeded sample of `train_rows`) for a fixed round
  count, until its `deadline` if any (past it, an error answer with `cut`), saves the model natively
  to `directory`, and scores `score_path`'s rows with the model read back from disk (answer
  `train_rows`: the rows it trained on); with
  `fold_files` (the search's own K fold models) it trains nothing: it copies them there and
  scores with their mean (answer `model_files`);
  `diagnose` probes an NN config on one fold; `explain` reads a saved best model back and
  explains it on `rows_path`'s rows (engine.importance), not past its `deadline` if it has
  one (where even the least explanation would, it answers `{"status": "out_of_time",
  "error": why}`); `shutdown` answers and exits.
- A failure is an answer, `{"status": "error", "error": "<one line>"}` (with the job's
  `trial` and `fold`), and the worker carries on. A job may carry a `deadline` (the run's
  time budget, as time.time()): past it training stops within a round or 64 NN steps and
  the job answers at once with an error marked `"cut": true`; a job's `stop_file`, once
  it exists, stops it the same way, with a deadline or without (the driver decided its trial:
  pruned, failed or cut); NN jobs trained together stop once every one's file exists. A
  worker that dies, hangs past its job timeout or writes a line that is not JSON is the
  transport's problem (the pool restarts it once, then runs the task alone).
- A train answer: `status`, `trial`, `fold`, `family`, `score` (the search metric, higher
  is better), `r2` (numbers; NaN for classes), `val_loss`, `train_loss` (squared error for
  numbers, absolute error under `--metric mae`, log-loss for classes: the run's, a count's
  Poisson model's too; a tree fold's on at most
  `scores.TRAIN_LOSS_ROWS` of its training rows), `best_rounds` (trees or epochs kept), `rounds_run`,
  `duration` (s), `device`, `batch_mode` (fused | serial), `fused_batch_size`; a fused NN
  fold adds `wall_seconds`, its whole batch's time (`duration` is then its share of it). A
  job sent with `"predictions": true` adds `val_predictions`: the model's prediction for each
  of the fold's validation rows, in the fold's order (a row of K class probabilities each,
  for classes), rounded to float32 (the out-of-fold predictions ensembles are built from).
  A job sent with `save_dir` keeps its fold model there and adds `model_file`.

The source system's dialect is still spoken: `source_dialect.py` translates it at the
server's edge, nowhere else (`TrainJob.path` is the one field only it fills).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trialfuse.catalog import NN
from trialfuse.fuse import Fuse
from trialfuse.task import NUMBERS, Task

READY, LOAD_DATASET, TRAIN_BATCH, RETRAIN, DIAGNOSE, EXPLAIN, SHUTDOWN = (
    "ready", "load_dataset", "train_batch", "retrain", "diagnose", "explain", "shutdown")
OUT_OF_TIME = "out_of_time"  # an explain command's answer where its deadline leaves too little
SEARCH_ROWS = "search"  # the resident dataset of a run: its search rows (everything but the holdout)


@dataclass
class TrainJob:
    """One fold of one trial, as it travels to a worker."""

    family: str
    params: dict[str, Any]
    fold: int
    seed: int
    trial: int | None = None  # echoed in the answer
    threads: int | None = None
    dataset: str = SEARCH_ROWS
    path: str | None = None  # the source's dialect: an NPZ of this fold's rows instead of a resident fold
    deadline: float | None = None  # time.time() past which the job stops and answers `cut`
    predictions: bool | None = None  # answer with the validation rows' predictions too (`val_predictions`)
    save_dir: str | None = None  # its fold model is kept there (answer: `model_file`)
    stop_file: str | None = None  # it stops (answers `cut`) once this file exists (fused: every job's)
    train_rows: int | None = None  # train on at most this many of the fold's training rows (a seeded sample)

    @classmethod
    def from_json(cls, job: dict[str, Any]) -> TrainJob:
        return cls(family=str(job.get("family", NN)), params=dict(job.get("params") or {}),
                   fold=int(job.get("fold", 0)), seed=int(job.get("seed", job.get("trial") or 0)),
                   trial=job.get("trial"), threads=job.get("threads"), dataset=str(job.get("dataset", SEARCH_ROWS)),
                   path=job.get("path"), deadline=job.get("deadline"), predictions=job.get("predictions"),
                   save_dir=job.get("save_dir"), stop_file=job.get("stop_file"), train_rows=job.get("train_rows"))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def load_dataset(path: str, folds, name: str = SEARCH_ROWS, task: Task = NUMBERS) -> dict[str, Any]:
    return {"command": LOAD_DATASET, "dataset": name, "path": path, "task": task.to_json(),
            "folds": [{"train": train.tolist(), "val": val.tolist()} for train, val in folds]}


def train_batch(jobs: list[TrainJob], fuse: Fuse) -> dict[str, Any]:
    return {"command": TRAIN_BATCH, "jobs": [job.to_json() for job in jobs], "fuse": fuse.to_json()}


def retrain(family: str, params: dict[str, Any], rounds: int | None, directory: str, score_path: str, seed: int,
            threads: int, fold_files: list[str] | None = None, train_rows: int | None = None,
            deadline: float | None = None) -> dict[str, Any]:
    """`train_rows`: train on a seeded sample of at most that many search rows (a sampled trial's
    model); `deadline`: the wall time (time.time()) past which training stops (a `cut` answer)."""
    return {"command": RETRAIN, "dataset": SEARCH_ROWS, "family": family, "params": params, "rounds": rounds,
            "directory": directory, "score_path": score_path, "seed": seed, "threads": threads,
            **({"fold_files": fold_files} if fold_files else {}), **({"train_rows": train_rows} if train_rows else {}),
            **({"deadline": deadline} if deadline is not None else {})}


def diagnose(family: str, params: dict[str, Any], seed: int, threads: int, fold: int = 0,
             deadline: float | None = None) -> dict[str, Any]:
    """`deadline`: the wall time (time.time()) past which the probe's training stops (an error answer)."""
    return {"command": DIAGNOSE, "family": family, "dataset": SEARCH_ROWS, "fold": fold, "params": params,
            "seed": seed, "threads": threads, **({"deadline": deadline} if deadline is not None else {})}


def explain(model_dir: str, rows_path: str, seed: int, deadline: float | None = None) -> dict[str, Any]:
    """`deadline`: the wall time (time.time()) the explanation must not run past; None: its own time box only."""
    return {"command": EXPLAIN, "model_dir": model_dir, "rows_path": rows_path, "seed": seed,
            **({"deadline": deadline} if deadline is not None else {})}


def shutdown() -> dict[str, Any]:
    return {"command": SHUTDOWN}


TIMED_OUT = "timed out"  # how the reason of a job whose worker --job-timeout killed begins


def error(reason: str, job: TrainJob | None = None, cut: bool = False) -> dict[str, Any]:
    """A failed command or job: one line of reason, and which job it was; `cut` when the
    job stopped at its deadline (its trial is cut by the budget, not failed)."""
    echo = {"trial": job.trial, "fold": job.fold} if job is not None else {}
    return {"status": "error", "error": reason.splitlines()[0] if reason else "unknown error", **echo,
            **({"cut": True} if cut else {})}


def train_answer(job: TrainJob, scores: dict[str, Any], pred_val=None) -> dict[str, Any]:
    """A trained fold's answer; with `pred_val` and a job that asked for them, its validation predictions."""
    answer = {**scores, "status": "complete", "trial": job.trial, "fold": job.fold, "family": job.family}
    if job.predictions and pred_val is not None:
        answer["val_predictions"] = np.asarray(pred_val, dtype=np.float32).tolist()
    return answer

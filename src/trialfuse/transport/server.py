"""A device worker's engine behind the protocol (`protocol.py`).

`Server.handle` takes one command dict and returns its answer dicts in order; `trialfuse
worker` (stdio_host.py) serves it as JSON lines, a Ray actor (ray_host.py) as calls. Torch
and the model libraries load inside the worker, on first use, never in the driver.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trialfuse.blend import fold_mean
from trialfuse.catalog import FAMILIES
from trialfuse.engine.families import FoldFailed, FoldResult
from trialfuse.engine.row_sample import sampled
from trialfuse.fuse import Fuse
from trialfuse.task import NUMBERS, Task
from trialfuse.testing import faults
from trialfuse.transport import protocol, source_dialect
from trialfuse.transport.protocol import TrainJob


@dataclass
class Dataset:
    X: np.ndarray  # [rows, features]
    y: np.ndarray  # [rows]
    folds: list[tuple[np.ndarray, np.ndarray]]  # (train rows, validation rows) per fold
    task: Task = NUMBERS  # what y holds: numbers, or class codes 0..K-1
    categorical: tuple[int, ...] = ()  # columns of X that hold category codes (the rows' NPZ says)

    def sample(self, rows: np.ndarray, most: int | None, seed: int) -> np.ndarray:
        """The rows a model trains on: all, or a last-chance trial's sample (by class)."""
        if most is None:
            return rows
        return sampled(rows, most, seed, self.y[rows].astype(np.int64) if self.task.is_classification else None)


class Server:
    """Answers protocol commands with the engine; a failing command or job is an error answer."""

    def __init__(self, device: str | None = None):
        self.device = device or _default_device()
        self.datasets: dict[str, Dataset] = {}
        self.prepared_folds: dict[tuple, Any] = {}  # (family, dataset, fold, sample's rows and seed): batched families

    def handle(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        """The answers to one command; the source's dialect is translated here, at the edge."""
        legacy = source_dialect.is_legacy(command)
        try:
            if legacy:
                return [source_dialect.to_legacy(a) for a in self._dispatch(source_dialect.from_legacy(command))]
            return self._dispatch(source_dialect.plain(command))
        except Exception as exc:  # a command's failure is an answer, never the end of the worker
            return _command_failed(command, f"{type(exc).__name__}: {exc}", legacy)

    def _dispatch(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        kind = command.get("command")
        if kind == protocol.TRAIN_BATCH:
            jobs = command.get("jobs")
            if not isinstance(jobs, list) or not jobs:
                raise ValueError("train_batch needs a non-empty list 'jobs'")
            return self._train_batch([TrainJob.from_json(j) for j in jobs], Fuse.from_json(command.get("fuse")))
        if kind == protocol.LOAD_DATASET:
            return [self._load_dataset(command)]
        if kind == protocol.RETRAIN:
            return [self._retrain(command)]
        if kind == protocol.DIAGNOSE:
            return [self._diagnose(command)]
        if kind == protocol.EXPLAIN:
            return [self._explain(command)]
        if kind == protocol.SHUTDOWN:
            return [{"status": "shutdown"}]
        raise ValueError(f"unknown command {kind!r}")

    def _load_dataset(self, command: dict[str, Any]) -> dict[str, Any]:
        name = str(command.get("dataset", protocol.SEARCH_ROWS))
        with np.load(command["path"], allow_pickle=False) as data:
            X, y = np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"], dtype=np.float64)
            categorical = tuple(int(i) for i in data["categorical"]) if "categorical" in data else ()
        folds = [(np.asarray(f["train"], dtype=np.int64), np.asarray(f["val"], dtype=np.int64))
                 for f in command["folds"]]
        self.datasets[name] = Dataset(X, y, folds, Task.from_json(command.get("task")), categorical)
        self.prepared_folds = {k: v for k, v in self.prepared_folds.items() if k[1] != name}
        return {"status": "loaded", "dataset": name, "rows": len(y), "folds": len(folds)}

    def _fold(self, job: TrainJob) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A job's raw (X_train, y_train, X_val, y_val): a resident fold, or the job's own NPZ."""
        if job.path is not None:
            with np.load(job.path, allow_pickle=False) as d:
                return tuple(np.asarray(d[k], dtype=np.float64) for k in ("X_train", "y_train", "X_val", "y_val"))
        data = self.datasets[job.dataset]
        train, val = data.folds[job.fold]
        train = data.sample(train, job.train_rows, job.seed)
        return data.X[train], data.y[train], data.X[val], data.y[val]

    def _task(self, job: TrainJob) -> Task:
        """What the job's target is: its resident dataset's task (a source-dialect fold: numbers)."""
        return NUMBERS if job.path is not None else self.datasets[job.dataset].task

    def _categorical(self, job: TrainJob) -> tuple[int, ...]:
        """Its dataset's category columns (a source-dialect fold: none)."""
        return () if job.path is not None else self.datasets[job.dataset].categorical

    def _prepared_fold(self, job: TrainJob, module):
        """The job's fold as its batched family's `fit_many` takes it (torch loads here, once
        per worker); a resident fold is prepared once, then reused."""
        if job.path is None:
            key = (job.family, job.dataset, job.fold, job.train_rows, job.seed if job.train_rows else None)
            if key not in self.prepared_folds:
                data = self.datasets[job.dataset]
                train, val = data.folds[job.fold]
                train = data.sample(train, job.train_rows, job.seed)
                self.prepared_folds[key] = module.prepare_fold(data.X, data.y, train, val, data.task, data.categorical)
            return self.prepared_folds[key]
        X_train, y_train, X_val, y_val = self._fold(job)
        X, y = np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val])
        return module.prepare_fold(X, y, np.arange(len(y_train)), np.arange(len(y_train), len(y)))

    def _train_batch(self, jobs: list[TrainJob], fuse: Fuse) -> list[dict[str, Any]]:
        """Batched families' jobs train together, a family at a time (fused where faster), the
        others one by one; answers in input order."""
        from trialfuse.engine.families import family_module

        answers: list[dict[str, Any] | None] = [None] * len(jobs)
        together: dict[str, list[tuple[int, TrainJob, Any]]] = {}
        for i, job in enumerate(jobs):
            try:
                if job.family not in FAMILIES:
                    raise ValueError(f"unknown family {job.family!r}")
                if FAMILIES[job.family].batched:
                    fold = self._prepared_fold(job, family_module(job.family))
                    together.setdefault(job.family, []).append((i, job, fold))
                else:
                    answers[i] = self._train_one(job)
            except Exception as exc:
                answers[i] = _failure(exc, job)
        for family, group in together.items():
            try:
                for (i, _job, _), answer in zip(group, self._train_together(family, group, fuse), strict=True):
                    answers[i] = answer
            except Exception as exc:
                for i, job, _ in group:
                    answers[i] = _failure(exc, job)
        return answers

    def _train_together(self, family: str, group: list[tuple[int, TrainJob, Any]], fuse: Fuse) -> list[dict[str, Any]]:
        """One batched family's jobs through its module's `fit_many`, as protocol answers."""
        from trialfuse.engine.families import family_module, stoppable

        module = family_module(family)
        faults.strike(family)
        deadlines = [job.deadline for _, job, _ in group if job.deadline is not None]
        with stoppable(*{job.stop_file for _, job, _ in group}):  # the task stops once every trial in it is decided
            results = module.fit_many([(job.params, job.seed, bool(job.save_dir)) for _, job, _ in group],
                                      [fold for _, _, fold in group], device=self.device, fuse=fuse,
                                      deadline=min(deadlines) if deadlines else None)
        return [protocol.error(r.error, job) if isinstance(r, FoldFailed) else _answer(job, r, module)
                for (_, job, _), r in zip(group, results, strict=True)]

    def _train_one(self, job: TrainJob) -> dict[str, Any]:
        """One fold of a family trained alone (the tree families), early stopping on its validation rows."""
        from trialfuse.engine.families import check_deadline, family_module, stoppable
        from trialfuse.engine.scores import fold_scores, train_loss_rows

        faults.strike(job.family)
        X_train, y_train, X_val, y_val = self._fold(job)
        started = time.perf_counter()
        module = family_module(job.family)
        task = self._task(job)
        watched = slice(None) if job.train_rows is None else sampled(np.arange(len(y_val)), job.train_rows, job.seed)
        with stoppable(job.stop_file):  # early stopping on a sample too (100,000 watched rows tripled a sampled fold)
            fitted = module.fit(job.params, X_train, y_train, X_val[watched], y_val[watched], device=self.device,
                                threads=job.threads, seed=job.seed, deadline=job.deadline, task=task,
                                categorical=self._categorical(job))
            check_deadline(job.deadline)  # decided, or out of time, after its last round: predicting is of no use
            pred_val = task.probabilities(module.predict(fitted.model, X_val))
            check_deadline(job.deadline)  # or while it predicted
            sample = train_loss_rows(len(y_train))
            pred_train = task.probabilities(module.predict(fitted.model, X_train[sample]))
        result = FoldResult(fitted.model, fitted.best_rounds, fitted.rounds_run,
                            **fold_scores(task, y_train[sample], pred_train, y_val, pred_val), predictions_val=pred_val,
                            duration=time.perf_counter() - started, device=self.device)
        return _answer(job, result, module)

    def _retrain(self, command: dict[str, Any]) -> dict[str, Any]:
        """Train on a resident dataset's rows (or a sampled trial's as many) for a fixed round count, save
        natively, and predict `score_path`'s X with the model read back from disk (the saved model's score)."""
        from trialfuse.engine.families import DeadlineReached, family_module

        faults.strike(command["family"])
        if command.get("fold_files"):
            return self._serve_folds(command)
        data = self.datasets[str(command.get("dataset", protocol.SEARCH_ROWS))]
        module = family_module(command["family"])
        started = time.perf_counter()
        seed = int(command.get("seed", 0))
        rows = data.sample(np.arange(len(data.y)), command.get("train_rows"), seed)  # a sampled trial's: as many
        X, y = (data.X, data.y) if len(rows) == len(data.y) else (data.X[rows], data.y[rows])  # all: no copy
        try:
            fitted = module.fit(command["params"], X, y, device=self.device, seed=seed,
                                threads=command.get("threads"), rounds=command.get("rounds"), task=data.task,
                                categorical=data.categorical, deadline=command.get("deadline"))
        except DeadlineReached as exc:
            return protocol.error(f"DeadlineReached: {exc}", cut=True)
        directory = Path(command["directory"])
        directory.mkdir(parents=True, exist_ok=True)
        filename = module.save(fitted.model, directory)
        with np.load(command["score_path"], allow_pickle=False) as d:
            X_score = np.asarray(d["X"], dtype=np.float64)
        predictions = data.task.probabilities(module.predict(module.load(directory / filename), X_score))
        return {"status": "complete", "model_file": filename, "predictions": predictions.tolist(),
                "rounds": int(fitted.rounds_run), "seconds": time.perf_counter() - started, "train_rows": len(rows)}

    def _serve_folds(self, command: dict[str, Any]) -> dict[str, Any]:
        """The search's K fold models as the saved model: copied into `directory` (fold-<k>.<ext>)
        and read back from there, their mean predicting `score_path`'s X."""
        from trialfuse.engine.families import family_module

        module = family_module(command["family"])
        started = time.perf_counter()
        directory = Path(command["directory"])
        directory.mkdir(parents=True, exist_ok=True)
        names = []
        for k, source in enumerate(command["fold_files"]):  # copied (the NN's exported from its kept form)
            names.append(module.publish(source, directory, f"fold-{k}"))
        with np.load(command["score_path"], allow_pickle=False) as d:
            X_score = np.asarray(d["X"], dtype=np.float64)
        task = self.datasets[str(command.get("dataset", protocol.SEARCH_ROWS))].task
        predictions = fold_mean([task.probabilities(module.predict(module.load(directory / name), X_score))
                                 for name in names])
        return {"status": "complete", "model_files": names, "predictions": predictions.tolist(), "rounds": None,
                "seconds": time.perf_counter() - started}

    def _diagnose(self, command: dict[str, Any]) -> dict[str, Any]:
        """A family's diagnostics probe (its module's `diagnose`) on one fold of a resident dataset."""
        from trialfuse.engine.families import family_module

        faults.strike("diagnose")
        job = TrainJob(str(command["family"]), command.get("params", {}), int(command.get("fold", 0)),
                       int(command.get("seed", 0)), dataset=str(command.get("dataset", protocol.SEARCH_ROWS)))
        if job.family not in FAMILIES or not FAMILIES[job.family].diagnostics:
            raise ValueError(f"family {job.family!r} has no diagnostics probe")
        X_train, y_train, X_val, y_val = self._fold(job)
        report = family_module(job.family).diagnose(job.params, X_train, y_train, X_val, y_val, seed=job.seed,
                                                    device=self.device, threads=command.get("threads"),
                                                    task=self._task(job), categorical=self._categorical(job),
                                                    deadline=command.get("deadline"))
        return {"status": "complete", "diagnostics": report}


    def _explain(self, command: dict[str, Any]) -> dict[str, Any]:
        """The saved best model explained on the rows of `rows_path` (see engine.importance)."""
        from trialfuse.engine.importance import OutOfTime, explain
        from trialfuse.engine.saved_model import SavedModel

        faults.strike("explain")
        directory = Path(command["model_dir"])
        metadata = json.loads((directory / "metadata.json").read_text())
        with np.load(command["rows_path"], allow_pickle=False) as rows:
            X, y = np.asarray(rows["X"], dtype=np.float64), np.asarray(rows["y"], dtype=np.float64)
        model = SavedModel(directory, metadata)
        limit = command["deadline"] - time.time() if command.get("deadline") is not None else None
        try:
            found = explain(model, X, y, metadata["feature_names"], int(command.get("seed", 0)), limit=limit)
        except OutOfTime as exc:
            return {"status": protocol.OUT_OF_TIME, "error": str(exc)}
        return {"status": "complete", "explanation": found}


def _command_failed(command: dict[str, Any], reason: str, legacy: bool) -> list[dict[str, Any]]:
    """A command that failed as a whole still answers as many lines as it has jobs (the
    client reads one per job), each naming its job."""
    jobs = command.get("jobs") if command.get("command") == protocol.TRAIN_BATCH else None
    if not isinstance(jobs, list) or not jobs or not all(isinstance(j, dict) for j in jobs):
        return [protocol.error(reason)]
    answers = [{**protocol.error(reason), "trial": j.get("trial", j.get("trial_number")),
                "fold": j.get("fold", j.get("fold_idx"))} for j in jobs]
    return [source_dialect.to_legacy(a) for a in answers] if legacy else answers


def _failure(exc: Exception, job: TrainJob) -> dict[str, Any]:
    from trialfuse.engine.families import DeadlineReached

    return protocol.error(f"{type(exc).__name__}: {exc}", job, cut=isinstance(exc, DeadlineReached))


def _default_device() -> str:
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":  # a CPU worker: no need to load torch to know
        return "cpu"
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def capabilities(device: str) -> dict[str, Any]:
    """What the worker's libraries can do on its device, for the pool's placement: on a GPU,
    whether LightGBM's build has the CUDA learner (the pip wheel has none), and the free
    memory (the NN's window)."""
    if not device.startswith("cuda"):
        return {}
    import torch

    return {"lightgbm_cuda": _lightgbm_cuda(), "gpu_memory_free": torch.cuda.mem_get_info()[0]}


def _lightgbm_cuda() -> bool:
    """Whether LightGBM here has the CUDA learner; False where LightGBM is not installed at all
    (a GPU machine that carries only what the NN needs still serves NN jobs)."""
    try:
        from trialfuse.engine.families import lightgbm_trees
    except (ImportError, OSError):  # not installed, or its native library cannot load (e.g. no libgomp)
        return False
    return lightgbm_trees.cuda_built()


STICKY_CUDA_ERRORS = ("illegal memory access", "unspecified launch failure", "device-side assert",
                      "misaligned address", "illegal instruction", "uncorrectable ecc error")


def broken_cuda_context(error: str) -> bool:
    """Whether an error is one after which the process's CUDA context is unusable: a sticky
    error, which every later kernel launch in the process reports again."""
    text = error.lower()
    return "cuda" in text and any(sticky in text for sticky in STICKY_CUDA_ERRORS)


def _answer(job: TrainJob, result: FoldResult, module) -> dict[str, Any]:
    """A trained fold's protocol answer, its model kept first where the job asks."""
    return protocol.train_answer(job, {**result.answer(), **_kept(module, result.model, job.save_dir)},
                                 result.predictions_val)


def _kept(module, model, save_dir: str | None) -> dict[str, Any]:
    """A fold's model kept in `save_dir` for serving as the mean of the folds' models (no refit):
    the answer's `model_file`; nothing without a `save_dir`. The NN keeps its weights
    (`mlp.keep`), the tree families their native file."""
    if not save_dir or model is None:
        return {}
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return {"model_file": getattr(module, "keep", module.save)(model, Path(save_dir))}

"""What a device worker does with a command, apart from how commands reach it.

The stdin/stdout worker (`worker.py`) and, later, a Ray actor host the same engine: it
takes one command dict and returns the response dicts, in order. It speaks the source
system's contract — `train` with an NPZ per fold (X_train, y_train, X_val, y_val),
`train_batch` with one result per job in input order, `shutdown` — and extends it:
`load_dataset` keeps a table and its folds resident, and jobs then name a fold instead of
a file, for the NN (`train`, `train_batch`, fused) and for tree families (`family`).
A failing job answers {"status": "error"} and the engine carries on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trialfuse.errors import inject_fault

NN_NAMES = ("nn", "neural_net")
PASSED_THROUGH = ("trial_number", "fold_idx")


@dataclass
class Dataset:
    X: np.ndarray
    y: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]


class WorkerEngine:
    def __init__(self, device: str | None = None):
        self.device = device or _default_device()
        self.datasets: dict[str, Dataset] = {}
        self.nn_folds: dict[tuple[str, int], Any] = {}

    def handle(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        kind = command.get("command")
        try:
            if kind == "train":
                return [self._train_batch([command])[0]]
            if kind == "train_batch":
                jobs = command.get("jobs")
                if not isinstance(jobs, list) or not jobs:
                    raise ValueError("train_batch needs a non-empty list 'jobs'")
                return self._train_batch(jobs, command.get("fuse", "auto"), command.get("max_batch"))
            if kind == "load_dataset":
                return [self._load_dataset(command)]
            if kind == "retrain":
                return [self._retrain(command)]
            if kind == "diagnose":
                return [self._diagnose(command)]
            if kind == "shutdown":
                return [{"status": "shutdown"}]
            raise ValueError(f"unknown command {kind!r}")
        except Exception as exc:  # a job's failure is an answer, never the end of the worker
            return [_error(command, exc)]

    def _load_dataset(self, command: dict[str, Any]) -> dict[str, Any]:
        name = str(command.get("dataset", "default"))
        with np.load(command["path"], allow_pickle=False) as data:
            X, y = np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"], dtype=np.float64)
        folds = [(np.asarray(f["train"], dtype=np.int64), np.asarray(f["val"], dtype=np.int64))
                 for f in command["folds"]]
        self.datasets[name] = Dataset(X, y, folds)
        self.nn_folds = {k: v for k, v in self.nn_folds.items() if k[0] != name}
        return {"status": "loaded", "dataset": name, "rows": len(y), "folds": len(folds)}

    def _fold(self, job: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A job's raw (X_train, y_train, X_val, y_val): from a resident dataset or its own NPZ."""
        if "X_train_path" in job:
            with np.load(job["X_train_path"], allow_pickle=False) as d:
                return tuple(np.asarray(d[k], dtype=np.float64) for k in ("X_train", "y_train", "X_val", "y_val"))
        data = self.datasets[str(job.get("dataset", "default"))]
        train, val = data.folds[int(job["fold"])]
        return data.X[train], data.y[train], data.X[val], data.y[val]

    def _nn_fold(self, job: dict[str, Any]):
        """The job's fold standardized for the NN (training-row statistics only)."""
        from trialfuse import fused_train  # torch loads here, once per worker

        if job.get("normalize_features", True) is False:
            raise ValueError("normalize_features=false is not supported: features are always standardized "
                             "with the training fold's statistics")
        if "X_train_path" not in job:  # a resident fold is standardized once, then reused
            key = (str(job.get("dataset", "default")), int(job["fold"]))
            data = self.datasets[key[0]]
            if key not in self.nn_folds:
                train, val = data.folds[key[1]]
                self.nn_folds[key] = fused_train.prepare_fold(data.X, data.y, train, val)
            return self.nn_folds[key]
        X_train, y_train, X_val, y_val = self._fold(job)
        X, y = np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val])
        return fused_train.prepare_fold(X, y, np.arange(len(y_train)), np.arange(len(y_train), len(y)))

    def _train_batch(self, jobs: list[dict[str, Any]], fuse: bool | str = "auto",
                     max_batch: int | None = None) -> list[dict[str, Any]]:
        """NN jobs train together (fused where faster); tree jobs one by one; answers in input order."""
        answers: list[dict[str, Any] | None] = [None] * len(jobs)
        nn_jobs = []
        for i, job in enumerate(jobs):
            try:
                if _family(job) in NN_NAMES:
                    nn_jobs.append((i, job, self._nn_fold(job)))
                else:
                    answers[i] = self._train_tree(job)
            except Exception as exc:
                answers[i] = _error(job, exc)
        if nn_jobs:
            try:
                for (i, _job, _), result in zip(nn_jobs, self._train_nn(nn_jobs, fuse, max_batch), strict=True):
                    answers[i] = result
            except Exception as exc:
                for i, job, _ in nn_jobs:
                    answers[i] = _error(job, exc)
        return [a for a in answers if a is not None]

    def _train_nn(self, nn_jobs, fuse, max_batch: int | None = None) -> list[dict[str, Any]]:
        from trialfuse import fused_train  # torch loads here, once per worker

        inject_fault("nn")
        fold_data, batch = [], []
        for key, (_, job, fold) in enumerate(nn_jobs):
            fold_data.append(fold)
            params = {**job.get("params", {})}
            if "use_leaky_relu" in job and "use_leaky_relu" not in params:
                params["use_leaky_relu"] = bool(job["use_leaky_relu"])  # the source sent it beside params
            seed = int(job.get("seed", job.get("trial_number", 0) or 0))
            batch.append(fused_train.Job(fused_train.mlp.with_defaults(params), key, seed, key=key))
        results = fused_train.run_jobs(batch, fold_data, device=self.device, fuse=fuse, max_batch=max_batch)
        answers = []
        for (_, job, _), r in zip(nn_jobs, results, strict=True):
            r.pop("predictions_val", None)
            r["best_rounds"] = r["best_epoch"]
            answers.append(_complete(job, r, model_type="neural_net"))
        return answers

    def _retrain(self, command: dict[str, Any]) -> dict[str, Any]:
        """Train on all rows of a resident dataset for a fixed round count, save natively, and
        predict `score_path`'s X with the model read back from disk (the saved model's score)."""
        from trialfuse.families import family_module

        inject_fault(command.get("family", "nn"))
        data = self.datasets[str(command.get("dataset", "default"))]
        module = family_module(command["family"])
        started = time.perf_counter()
        fitted = module.fit(command["params"], data.X, data.y, device=self.device, threads=command.get("threads"),
                            seed=int(command.get("seed", 0)), rounds=command.get("rounds"))
        directory = Path(command["directory"])
        directory.mkdir(parents=True, exist_ok=True)
        filename = module.save(fitted.model, directory)
        with np.load(command["score_path"], allow_pickle=False) as d:
            X_score = np.asarray(d["X"], dtype=np.float64)
        predictions = module.predict(module.load(directory / filename), X_score)
        return {"status": "complete", "model_file": filename, "predictions": predictions.tolist(),
                "rounds": int(fitted.rounds_run), "seconds": time.perf_counter() - started}

    def _diagnose(self, command: dict[str, Any]) -> dict[str, Any]:
        """The NN diagnostics probe on one fold of a resident dataset (see nn_diagnostics)."""
        from trialfuse.nn_diagnostics import diagnose

        inject_fault("diagnose")
        X_train, y_train, X_val, y_val = self._fold(command)
        report = diagnose(command.get("params", {}), X_train, y_train, X_val, y_val, seed=int(command.get("seed", 0)),
                          device=self.device, threads=command.get("threads"))
        return {"status": "complete", "diagnostics": report}

    def _train_tree(self, job: dict[str, Any]) -> dict[str, Any]:
        from trialfuse.families import family_module
        from trialfuse.scores import fold_scores

        family = _family(job)
        inject_fault(family)
        X_train, y_train, X_val, y_val = self._fold(job)
        started = time.perf_counter()
        module = family_module(family)
        fitted = module.fit(job.get("params", {}), X_train, y_train, X_val, y_val, device=self.device,
                            threads=job.get("threads"), seed=int(job.get("seed", 0)))
        pred_val, pred_train = module.predict(fitted.model, X_val), module.predict(fitted.model, X_train)
        return _complete(job, {
            **fold_scores(y_train, pred_train, y_val, pred_val), "best_rounds": fitted.best_rounds,
            "rounds_run": fitted.rounds_run, "duration": time.perf_counter() - started, "device": self.device,
            "batch_mode": "serial"}, model_type=family)


def _family(job: dict[str, Any]) -> str:
    return str(job.get("family", job.get("model_type", "nn")))


def _complete(job: dict[str, Any], result: dict[str, Any], model_type: str) -> dict[str, Any]:
    out = {"status": "complete", "model_type": model_type, **{k: job.get(k) for k in PASSED_THROUGH}}
    out.update({k: v for k, v in result.items() if k not in ("key", "seed")})
    if "fold" in job and out.get("fold_idx") is None:
        out["fold_idx"] = job["fold"]
    return out


def _error(job: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    return {"status": "error", "error": f"{type(exc).__name__}: {exc}", **{k: job.get(k) for k in PASSED_THROUGH}}


def _default_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"

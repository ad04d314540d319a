"""The source system's dialect, translated at the server's edge and nowhere else.

The source sent an NPZ of each fold's rows (`X_train_path`), `fold_idx`, `trial_number`,
`model_type` (`neural_net`), `normalize_features`, `use_leaky_relu` beside the params, a
single-job `train` command and `fuse` as true / false / "auto"; its answers carry
`trial_number`, `fold_idx`, `epochs_run`, `best_epoch` and `model_type`. Its smoke tests
(tests/transport/test_protocol_subprocess.py) still pass through here.
"""
from __future__ import annotations

from typing import Any

from trialfuse.catalog import NN
from trialfuse.fuse import Fuse
from trialfuse.transport.protocol import SEARCH_ROWS, TRAIN_BATCH, TrainJob


def plain(command: dict[str, Any]) -> dict[str, Any]:
    """A command in today's form: the source's one-job `train` as a `train_batch`, its
    true / false `fuse` as a Fuse; any other command as it is."""
    if command.get("command") == "train":
        command = {"command": TRAIN_BATCH, "jobs": [command]}
    if not isinstance(command.get("fuse"), dict | None):
        command = {**command, "fuse": _source_fuse(command["fuse"]).to_json()}
    return command


def _source_fuse(value: Any) -> Fuse:
    """The source's `fuse`: true, false or "auto" (today's dict form read too)."""
    if isinstance(value, dict):
        return Fuse.from_json(value)
    return Fuse("on") if value is True else Fuse("off") if value is False else Fuse()


LEGACY_NN = "neural_net"


def is_legacy(command: dict[str, Any]) -> bool:
    jobs = command.get("jobs") if command.get("command") == TRAIN_BATCH else [command]
    return any(isinstance(j, dict) and ("X_train_path" in j or "fold_idx" in j or "trial_number" in j
                                        or "model_type" in j) for j in (jobs or []))


def from_legacy(command: dict[str, Any]) -> dict[str, Any]:
    """A source-dialect `train` or `train_batch` as today's `train_batch`."""
    jobs = command.get("jobs") if command.get("command") == TRAIN_BATCH else [command]
    if not isinstance(jobs, list) or not jobs:
        raise ValueError("train_batch needs a non-empty list 'jobs'")
    fuse = _source_fuse(command.get("fuse"))
    if "max_batch" in command:
        fuse = Fuse("on" if fuse.mode != "off" else "off", int(command["max_batch"]), fuse.precision)
    return {"command": TRAIN_BATCH, "fuse": fuse.to_json(), "jobs": [_job_from_legacy(j) for j in jobs]}


def _job_from_legacy(job: dict[str, Any]) -> dict[str, Any]:
    if job.get("normalize_features", True) is False:
        raise ValueError("normalize_features=false is not supported: features are always standardized "
                         "with the training fold's statistics")
    family = str(job.get("family", job.get("model_type", NN)))
    params = dict(job.get("params") or {})
    if "use_leaky_relu" in job and "use_leaky_relu" not in params:
        params["use_leaky_relu"] = bool(job["use_leaky_relu"])  # the source sent it beside params
    trial = job.get("trial_number", job.get("trial"))
    return TrainJob(family=NN if family == LEGACY_NN else family, params=params,
                    fold=int(job.get("fold", job.get("fold_idx", 0)) or 0),
                    seed=int(job.get("seed", trial or 0)), trial=trial, threads=job.get("threads"),
                    dataset=str(job.get("dataset", SEARCH_ROWS)), path=job.get("X_train_path", job.get("path")),
                    deadline=job.get("deadline")).to_json()


def to_legacy(answer: dict[str, Any]) -> dict[str, Any]:
    """Today's train answer in the source's words (its smoke tests read these keys)."""
    out = {k: v for k, v in answer.items() if k not in ("trial", "fold", "family", "best_rounds", "rounds_run")}
    out["trial_number"], out["fold_idx"] = answer.get("trial"), answer.get("fold")
    for loss, mse in (("val_loss", "val_mse"), ("train_loss", "train_mse")):  # the source regressed: MSE
        if loss in out:
            out[mse] = out.pop(loss)
    if answer.get("status") == "complete":
        nn = answer.get("family") == NN
        out["model_type"] = LEGACY_NN if nn else answer.get("family")
        out["epochs_run" if nn else "rounds_run"] = answer.get("rounds_run")
        out["best_epoch" if nn else "best_rounds"] = answer.get("best_rounds")
    return out

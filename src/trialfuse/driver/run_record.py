"""results.json as a type: what a finished run says about itself, written once by the driver.

The console summary, the report and the Python API read a `RunRecord` rather than a dict
by string keys, so a field is named in one place and a rename is a type error, not a blank
cell. On disk (and from `compare_models`) it stays plain JSON: `to_json` / `from_json`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
import optuna

from trialfuse.driver import run_dir
from trialfuse.driver.storage import open_storage
from trialfuse.driver.trial_records import FamilyResult
from trialfuse.task import Task, four_places


class MemberRecord(TypedDict):
    """One member of an ensemble: which trial, its weight, and (once saved) how it is served."""

    family: str
    trial: int
    weight: float
    cv_score_mean: float
    params: dict[str, Any]
    rounds: NotRequired[int | None]
    model_file: NotRequired[str]  # a model retrained on all search rows
    model_files: NotRequired[list[str]]  # or its K fold models, averaged


class EnsembleRecord(TypedDict):
    """The ensemble selection's outcome (final_model.plan), saved or not, and why not."""

    chosen: bool
    oof_score: float
    best_single_oof_score: float
    candidates: int
    rounds: int
    members: list[MemberRecord]
    reason: NotRequired[str]  # why it was not saved
    method: NotRequired[str]  # "caruana" (a weighted average) or "stack" (final_model); runs before stacks: absent
    caruana_oof_score: NotRequired[float]  # the greedy average's score on the rows that chose it
    caruana_inner_oof_score: NotRequired[float]  # and its inner out-of-fold score (runs before 2026-12-05: absent)
    best_single_inner_oof_score: NotRequired[float]  # the best single model's, scored the same way: what the
    # ensemble is met with where present (older runs: absent, it met best_single_oof_score)
    stack_oof_score: NotRequired[float]  # the stack's inner out-of-fold score, where one was fit
    stack: NotRequired[dict[str, Any]]  # the saved stack's served form (blend.serve)
    passed_over: NotRequired[list[str]]  # saved as the lower-scoring choice: the better one's retrain did not fit
    holdout_score: NotRequired[float]  # once saved: its holdout score, and the best single model's
    best_single_holdout_score: NotRequired[float]
    fold_scores: NotRequired[list[float]]  # its inner out-of-fold predictions scored fold by fold, and the best
    best_single_fold_scores: NotRequired[list[float]]  # single model's (ensemble.fold_scores; before 2026-12-07 absent)



def cv_of(record: EnsembleRecord) -> tuple[float, float, float]:
    """The ensemble's CV figure as the families' read (the mean of its folds' scores), their spread
    (numpy's std; NaN for one fold or none kept) and the best single model's mean scored the same
    way; a run before fold scores were kept: its pooled out-of-fold scores, spread NaN."""
    if "fold_scores" not in record:
        return record["oof_score"], float("nan"), best_single_met(record)
    folds = record["fold_scores"]
    spread = float(np.std(folds)) if len(folds) > 1 else float("nan")
    return float(np.mean(folds)), spread, float(np.mean(record["best_single_fold_scores"]))


def best_single_met(record: EnsembleRecord) -> float:
    """The best single model's score as the ensemble's was found (its inner out-of-fold score;
    a run before 2026-12-05 had only its out-of-fold one): what the ensemble was met with."""
    return record.get("best_single_inner_oof_score", record["best_single_oof_score"])


class NotKept(TypedDict):
    """The ensemble could not even be tried: the best model's predictions were not kept."""

    chosen: bool
    reason: str


@dataclass
class RunRecord:
    """One finished run: the table, how it was searched, each family's result, the winner."""

    data: str
    target: str
    rows: int
    features: int
    holdout_rows: int
    folds: int
    seed: int
    device: str
    workers: int
    fuse: str
    precision: str
    prune: bool
    trials_per_family: int | None
    storage: str  # the Optuna storage: a journal file in the run directory, or a database URL
    families: dict[str, FamilyResult]
    ranking: list[str]  # families with a model, best CV score first
    timeout_seconds: float | None
    budget_exhausted: bool
    winner: str  # a family, or final_model.ENSEMBLE
    holdout_score: float
    ensemble: EnsembleRecord | NotKept | None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    out: str = ""
    task: Task = field(default_factory=Task)  # what was predicted, and the metric every score is in
    # every metric of the task on the holdout, as people read them, for the model and for the prior
    # (the search rows' mean or class shares): the base rate beside each score
    holdout_metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["families"] = {name: result.summary() for name, result in self.families.items()}
        record["task"] = self.task.to_json()
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunRecord:
        families = {name: FamilyResult(name, **summary) for name, summary in record["families"].items()}
        return cls(**{**record, "families": families, "task": Task.from_json(record.get("task"))})

    @classmethod
    def read(cls, out: Path | str) -> RunRecord:
        return cls.from_json(run_dir.read_json(Path(out) / run_dir.RESULTS))

    def write(self, out: Path) -> None:
        run_dir.write_json(out / run_dir.RESULTS, self.to_json(), fault_point="results")

    @property
    def prior_score(self) -> float | None:
        """The prior's holdout score in the search metric as people read it (the base rate beside
        the winner's); None for a run that did not keep it."""
        return self.holdout_metrics.get("prior", {}).get(self.task.metric_name)

    def prior_shown(self) -> str:
        """' (prior 0.6931)', or blank without one."""
        return "" if self.prior_score is None else f" (prior {four_places(self.prior_score)})"

    def data_at(self, run: Path | str) -> Path:
        """The run's table as read from `run`: by the absolute path recorded where it exists, else
        (a path relative to another working directory, a run directory moved) the DataFrame kept
        in the run directory."""
        recorded, kept = Path(self.data), Path(run) / run_dir.DATA
        if (recorded.is_absolute() and recorded.is_file()) or recorded.name != run_dir.DATA or not kept.is_file():
            return recorded
        return kept

    def storage_at(self, run: Path | str) -> str:
        """The run's Optuna storage as read from `run`: a database URL, or a journal file by the
        absolute path recorded where it exists; the run directory's own journal where the record
        names the journal its run directory had (a run directory moved or copied: the copy's report
        named the original's), or where the recorded path is not there (relative to another
        working directory)."""
        recorded, own = Path(self.storage), Path(run) / run_dir.JOURNAL
        if "://" in self.storage or not own.is_file():
            return self.storage
        if recorded.is_absolute() and recorded.is_file() and recorded != Path(self.out) / run_dir.JOURNAL:
            return self.storage  # a journal of the user's own (--storage), wherever the run directory is
        return str(own)

    def trials(self, run: Path | str) -> dict[str, list[optuna.trial.FrozenTrial]]:
        """Every family's trials as its study holds them (families without a study left out)."""
        storage = open_storage(self.storage_at(run), Path(run))
        found = {}
        for family in self.families:
            try:
                found[family] = optuna.load_study(study_name=family, storage=storage).get_trials(deepcopy=False)
            except KeyError:
                continue
        return found

    def holdout_scores(self) -> dict[str, float | None]:
        """The holdout score of what was scored on it, by name: the winner, and beside a saved
        ensemble the best single model (its family's name)."""
        scores: dict[str, float | None] = {self.winner: self.holdout_score}
        if self.ensemble and self.ensemble["chosen"] and self.ranking:
            scores[self.ranking[0]] = self.ensemble.get("best_single_holdout_score")
        return scores

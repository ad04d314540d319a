"""The model a run saves: a weighted ensemble or a stack of the search's own models
(driver.ensemble, driver.stack), unless the best single model is clearly better out of fold
or none fits the time left, then that model. Either way each model is
made ready to serve (below), saved in its library's own format under best_model/, and
scored once on the holdout, which never chooses anything.

How a model is served (each member of an ensemble alike), then averaged with the weights:
- its K fold models (`--no-refit`, the default): the very models whose out-of-fold
  predictions scored and chose it, kept by the search (out_of_fold), served as their mean:
  nothing is trained after the search, at K times the predict cost and K files per member
  (as accurate or more on our tables: README, "The ensemble"). The NN keeps its fold models'
  weights and exports only a served one;
- refit (`--refit`): trained once more on all search rows for the mean of its folds' best
  round counts (several at once, one per worker): one more training per member.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from trialfuse.blend import combine, serve
from trialfuse.catalog import FAMILIES, params_from_trial
from trialfuse.driver import ensemble, run_dir, stack
from trialfuse.driver.budget import Budget, final_seconds, parallel_seconds, say_seconds, wall_time
from trialfuse.driver.data_checks import far_out_targets
from trialfuse.driver.out_of_fold import OutOfFold
from trialfuse.driver.run_record import cv_of
from trialfuse.driver.storage import RUN_DIR
from trialfuse.driver.table import Table
from trialfuse.driver.trial_records import FamilyResult
from trialfuse.seeds import RETRAIN, model_seed
from trialfuse.task import NUMBERS, Objective, Task, plain_label
from trialfuse.transport.process_pool import WorkerPool
from trialfuse.transport.side_jobs import Retrain

ENSEMBLE = "ensemble"  # the winner's name in results.json when the ensemble is saved
CARUANA, STACK = "caruana", "stack"  # how a saved ensemble combines its members
METHOD_WORDS = {CARUANA: "the average", STACK: "the stack"}
MEMBERS = "members"  # best_model/members/<family>-<trial>/: one member's native model file(s)


@dataclass
class Member:
    family: str
    trial: int
    params: dict[str, Any]
    rounds: int | None  # the mean of its folds' best round counts
    fold_seconds: list[float]
    cv_score_mean: float
    weight: float = 1.0
    fold_files: list[Path] | None = None  # served as these K fold models' mean (no refit)
    train_rows: int | None = None  # its trial's folds each trained on a sample of this many rows (a last chance)

    @property
    def name(self) -> str:
        return f"{self.family}-{self.trial}"

    @property
    def retrain_seconds(self) -> float:
        return final_seconds(self.fold_seconds, bool(self.fold_files), FAMILIES[self.family].exported)


@dataclass
class Plan:
    """What to retrain: one member (the best single model) or an ensemble's members, that model first."""

    members: list[Member]
    ensemble: dict[str, Any] | None = None  # the selection's record for results.json and the report
    warnings: list[str] = field(default_factory=list)
    stack: dict[str, Any] | None = None  # a stack's served form (blend.serve), where the stack won

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    def work(self, rows: int) -> str:
        """What saving it takes, for the progress line: its kept fold models, or a retrain."""
        what = f"the ensemble's {len(self.members)} members" if self.is_ensemble else self.members[0].family
        served = sum(bool(m.fold_files) for m in self.members)
        if served == len(self.members):
            return f"saving {what} (fold models)"
        return f"retraining {what} on {rows} rows" + (f" ({served} served by fold models)" if served else "")


@dataclass
class Choice:
    """One way to combine the kept models: which (indices into the candidates), how, and its score."""

    method: str  # CARUANA or STACK
    picked: list[int]
    weights: list[float]
    score: float  # out-of-fold, inner where the search's folds were given
    predictions: np.ndarray  # the out-of-fold predictions `score` is of
    served: dict[str, Any] | None = None  # a stack's served form (blend.serve)


def plan(winner: FamilyResult, storage: optuna.storages.BaseStorage, out_of_fold: OutOfFold | None,
         y_search: np.ndarray, workers: int, budget: Budget | None, *, ensembles: bool = True,
         refit: bool = True, task: Task = NUMBERS, folds: list | None = None,
         families: Collection[str] | None = None) -> Plan:
    """An ensemble of the kept out-of-fold predictions (`ensembles`) whose retrain fits in the
    time left, unless the best single model is clearly better (ensemble.clearly_worse); else
    the best single model. The ensemble: the Caruana average or a stack (driver.stack), the
    higher-scoring first, the other if that one's retrain does not fit (a stack may read 8
    models where the average chose 3); its candidates are the trials of `families` (this run's
    --models; None: every family kept), not those of families only an earlier run here searched.
    Given the search's `folds`, all three are scored by an inner K-fold over them (the average's
    own score is measured on the rows that chose it, and the best single model's on the rows that
    chose it among many: both flatter). Without `refit`, each model whose K fold models were kept
    is served by them."""
    single = Member(winner.family, winner.best_trial, winner.best_params, _rounds(winner.best_rounds),
                    winner.best_fold_seconds, winner.cv_score_mean, train_rows=winner.best_train_rows)
    if out_of_fold is not None and not refit:
        single.fold_files = out_of_fold.fold_files(single.family, single.trial)
    elsewhere = _kept_elsewhere(storage, single, out_of_fold)
    if out_of_fold is None or not ensembles:
        return Plan([single], warnings=[f"{elsewhere}: it is retrained here on all search rows"]
                    if elsewhere and not refit else [])
    candidates, vectors = _candidates(out_of_fold, storage, families)
    names = [m.name for m in candidates]
    if single.name not in names:
        reason = elsewhere or "the best model's out-of-fold predictions were not kept"
        retrained = ", retrained on all search rows" if not single.fold_files else ""
        return Plan([single], {"chosen": False, "reason": reason},
                    [f"no ensemble: {reason}; saved here: that model alone{retrained}"] if elsewhere else [])
    y_search = np.asarray(y_search, dtype=np.float64)
    first = names.index(single.name)
    single_score, single_predictions = task.score(y_search, vectors[first]), vectors[first]
    selection = ensemble.select(vectors, y_search, first=first, task=task)  # the winner is a member
    average = Choice(CARUANA, selection.members, [float(w) for w in selection.weights[selection.members]],
                     selection.score, combine(vectors[selection.members], selection.weights[selection.members]))
    choices, to_beat = [average], single_score
    scores: dict[str, Any] = {"caruana_oof_score": selection.score}
    if folds is not None and len(candidates) > 1:  # all scored by an inner K-fold: the same footing
        inner = ensemble.inner_scores(vectors, y_search, folds, task=task)
        to_beat, single_predictions = inner.single, inner.single_predictions
        average.score, average.predictions = inner.average, inner.average_predictions
        families = [m.family for m in candidates]
        ranked = [task.score(y_search, v) for v in vectors]  # as each fold's rows rank them (Pick.scores)
        read = stack.inputs(ranked, families, selection.members, first)
        reads = [stack.inputs(pick.scores, families, pick.members, pick.first) for pick in inner.picks]
        stacked = stack.fit(vectors, y_search, folds, task, read, reads)
        scores.update(caruana_inner_oof_score=average.score, best_single_inner_oof_score=to_beat,
                      stack_oof_score=stacked.oof_score)
        if len(stacked.inputs) > 1:
            choices.append(Choice(STACK, stacked.inputs, stacked.weights, stacked.oof_score, stacked.oof,
                                  stacked.served))
    choices.sort(key=lambda c: -c.score)  # stable: the average first where they tie
    single_folds = ensemble.fold_scores(single_predictions, y_search, folds, task) if folds is not None else None
    records, passed_over = [], []
    for choice in choices:
        members = _members(choice, candidates, single, out_of_fold if not refit else None)
        record = {"chosen": False, "oof_score": choice.score, "best_single_oof_score": single_score,
                  "candidates": len(candidates), "rounds": ensemble.ROUNDS, "method": choice.method, **scores,
                  **({"fold_scores": ensemble.fold_scores(choice.predictions, y_search, folds, task),
                      "best_single_fold_scores": single_folds} if folds is not None else {}),
                  **({"stack": choice.served} if choice.served else {}), "members": [_describe(m) for m in members]}
        records.append(record)
        if len(members) < 2:
            record["reason"] = f"no gain over the best single model: {METHOD_WORDS[choice.method]} holds it alone"
            continue
        if ensemble.clearly_worse(choice.predictions, single_predictions, y_search, task):
            mean, error = ensemble.shortfall(choice.predictions, single_predictions, y_search, task)
            record["reason"] = (f"the best single model is clearly better: its out-of-fold {task.loss_name} is lower "
                                f"by {mean:.3g} a row (standard error {error:.2g}; {task.metric.label} "
                                f"{task.show(to_beat)} vs {task.show(choice.score)})")
            continue
        seconds = parallel_seconds([m.retrain_seconds for m in members], workers)
        if budget is not None and seconds > single.retrain_seconds and not budget.fits(seconds):
            work = "saving and scoring" if all(m.fold_files for m in members) else "retrain"
            record["reason"] = (f"its {len(members)} members' {work} (about {say_seconds(seconds)}) would not fit in "
                                f"the {say_seconds(budget.left())} left")
            passed_over.append(f"ensemble not saved as {METHOD_WORDS[choice.method]}: {record['reason']}")
            continue
        record["chosen"] = True
        if passed_over:
            record["passed_over"] = list(passed_over)
        return Plan(members, record, passed_over, stack=choice.served)
    return Plan([single], records[0], passed_over)  # the best-scoring choice's record says why it was not saved


def _members(choice: Choice, candidates: list[Member], single: Member, out_of_fold: OutOfFold | None) -> list[Member]:
    """The choice's members with their weights, the winner first (the fallback, and the first
    holdout score; a stack reads it first already); with `out_of_fold`, served by their fold models."""
    members = [dataclasses.replace(candidates[i], weight=float(w),
                                   fold_files=out_of_fold.fold_files(candidates[i].family, candidates[i].trial)
                                   if out_of_fold is not None else None)
               for i, w in zip(choice.picked, choice.weights, strict=True)]
    if choice.method == CARUANA:
        members.sort(key=lambda m: m.name != single.name)
    return members


def train_and_save(pool: WorkerPool, chosen: Plan, best: FamilyResult, table: Table, rest: np.ndarray,
                   sealed: np.ndarray, out: Path, seed: int, budget: Budget | None = None) -> dict[str, Any]:
    """Retrain the plan's members, publish best_model/, and score the holdout once."""
    staged = run_dir.staging_dir(out)
    members = chosen.members
    directories = [staged / MEMBERS / m.name if chosen.is_ensemble else staged for m in members]
    answers = _retrain(pool, [Retrain(m.family, m.params, m.rounds, d, model_seed(seed, RETRAIN), m.retrain_seconds,
                                      m.fold_files) for m, d in zip(members, directories, strict=True)],
                       [m.train_rows for m in members], table.X[sealed], budget)
    failed = [f"{m.name}: {a.get('error')}" for m, a in zip(members, answers, strict=True)
              if a.get("status") != "complete"]
    if failed and chosen.is_ensemble:  # the best single model still gets saved
        run_dir.remove_dir(staged)
        fallback = Plan([dataclasses.replace(members[0], weight=1.0)], {**(chosen.ensemble or {}), "chosen": False,
                                   "reason": f"a member's retrain failed ({failed[0]})"},
                        [*chosen.warnings, f"ensemble not saved: a member's retrain failed ({failed[0]})"])
        return train_and_save(pool, fallback, best, table, rest, sealed, out, seed, budget)
    if failed:
        raise RuntimeError(f"retrain failed: {failed[0]}")
    y_holdout = table.y[sealed]
    predictions = [np.asarray(a["predictions"], dtype=np.float64) for a in answers]
    task = table.task
    predicted = serve(predictions, [m.weight for m in members], chosen.stack)
    holdout_score = task.score(y_holdout, predicted)
    prior = task.prior(table.y[rest], len(sealed))  # what the search rows' mean or class shares alone predict
    run_dir.write_arrays(out / run_dir.HOLDOUT_PREDICTIONS, y=y_holdout, prediction=predicted, prior=prior)
    saved = [_saved_files(d, a, staged) for d, a in zip(directories, answers, strict=True)]
    record = dict(chosen.ensemble) if chosen.ensemble else None
    if chosen.is_ensemble:
        record["holdout_score"] = holdout_score
        record["best_single_holdout_score"] = table.task.score(y_holdout, predictions[0])  # the winner is first
        record["members"] = [{**_describe(m), **files, "rounds": a["rounds"],
                              "sampled_train_rows": _sampled_rows(m, a, len(rest))}
                             for m, files, a in zip(members, saved, answers, strict=True)]
    first = members[0]
    metadata = {
        "family": ENSEMBLE if chosen.is_ensemble else first.family,
        "params": None if chosen.is_ensemble else first.params,
        "rounds": None if chosen.is_ensemble else answers[0]["rounds"],
        **({"model_file": None} if chosen.is_ensemble else saved[0]),
        **({"members": record["members"]} if chosen.is_ensemble else {}),
        **({"stack": chosen.stack} if chosen.stack else {}),
        "feature_names": table.feature_names,
        "categories": table.categories,
        "dates": table.dates,
        "dropped_columns": table.dropped,
        "target": table.target,
        "task": table.task.to_json(),  # what it predicts and the metric its scores are in
        "cv_score_mean": cv_of(record)[0] if chosen.is_ensemble else best.cv_score_mean,
        "cv_score_folds": record.get("fold_scores") if chosen.is_ensemble else best.cv_score_folds,
        "holdout_score": holdout_score,
        "best_trial": None if chosen.is_ensemble else best.best_trial,
        "train_rows": len(rest),
        "sampled_train_rows": None if chosen.is_ensemble else _sampled_rows(first, answers[0], len(rest)),
        "seed": seed,
        "libraries": run_dir.library_versions(),
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    run_dir.write_json(staged / run_dir.METADATA, metadata)
    run_dir.publish_model_dir(staged, out)
    return {"winner": ENSEMBLE if chosen.is_ensemble else first.family, "holdout_score": holdout_score,
            "holdout_metrics": {"model": task.report(y_holdout, predicted), "prior": task.report(y_holdout, prior)},
            "retrain_seconds": max(float(a["seconds"]) for a in answers), "ensemble": record,
            "warnings": [*chosen.warnings, *_no_better_than_prior(table, rest, holdout_score,
                                                                   task.score(y_holdout, prior)),
                         *_classes_never_predicted(task, y_holdout, predicted), *_one_value(task, y_holdout)]}


def _one_value(task: Task, y_holdout: np.ndarray) -> list[str]:
    """A line where the holdout's target is one value: R² is undefined there (scikit-learn reads
    it as 1.0: a new user's near-constant target scored "holdout R² 1.0000", nothing said)."""
    if task.is_classification or np.ptp(y_holdout) > 0:
        return []
    return [f"every holdout row's target is {y_holdout[0]:.10g}: its R² is undefined (scikit-learn reads it as 1.0 "
            "or 0.0) and says nothing; does the target vary enough to predict?"]


def _retrain(pool: WorkerPool, models: list[Retrain], sampled: list[int | None], X_holdout: np.ndarray,
             budget: Budget | None) -> list[dict[str, Any]]:
    """The pool's answers for `models`. A last-chance trial's model (its folds trained on
    `sampled` rows each) is refit on every search row where that ends by the latest a run may
    still train (Budget.last_end: a million rows took 10 s, holdout R² 0.44 against 0.32 on the
    sample), else on as many rows as each of its folds had, once more: on every row with no
    deadline it could run minutes past --timeout."""
    deadline = wall_time(budget.last_end()) if budget is not None else None
    asked = [dataclasses.replace(m, deadline=deadline) if rows and not m.fold_files else m
             for m, rows in zip(models, sampled, strict=True)]
    answers = pool.retrain(asked, X_holdout)
    cut = [i for i, a in enumerate(answers) if a.get("cut")]
    if cut:
        again = pool.retrain([dataclasses.replace(asked[i], train_rows=sampled[i], deadline=None) for i in cut],
                             X_holdout)
        for i, answer in zip(cut, again, strict=True):
            answers[i] = answer
    return answers


def _sampled_rows(member: Member, answer: dict[str, Any], rows: int) -> int | None:
    """The rows each of a saved model's trainings had at most, where that was a sample of the
    search rows: its K fold models' (a last-chance trial), or a refit's on a sample (above)."""
    if member.fold_files:
        return member.train_rows
    trained = answer.get("train_rows", rows)
    return trained if trained < rows else None


def _no_better_than_prior(table: Table, rest: np.ndarray, score: float, prior_score: float) -> list[str]:
    """A line where the saved model predicts the holdout no better than the search rows' mean
    (or class shares) alone: a model that looks like a result and is none. Where a few search
    rows' targets lie far from the rest (said before training), those are named as the likelier
    cause: 5 values of 1e6 among 2,000 read "the features may not predict the target", where the
    features did and the run by MAE predicted the ordinary rows to 0.44."""
    if score > prior_score:
        return []
    task = table.task
    why = (f"columns dropped as naming rows ({', '.join(map(repr, table.identifiers))}) may be what predicts it: "
           "--keep-columns keeps them" if table.identifiers else
           "the few target values far from the rest (said before training) may be why" if
           task.objective == Objective.SQUARED_ERROR and far_out_targets(table.y[rest], task) else
           "the features may not predict the target, or the rows are too few to learn it")
    return [f"the saved model scores no better on the holdout than the prior ({task.metric.label} "
            f"{task.show(score)} against {task.show(prior_score)}): {why}"]


def _classes_never_predicted(task: Task, y_holdout: np.ndarray, predicted: np.ndarray) -> list[str]:
    """A line where a class with holdout rows is the likeliest for none of them: a 0.1% class
    scored accuracy 0.999 and balanced accuracy 0.5, every row labelled the majority, nothing said,
    while its probabilities ranked the class well (ROC-AUC 0.97)."""
    if not task.is_classification:
        return []
    held, chosen = task.class_counts(y_holdout), task.class_counts(np.asarray(predicted).argmax(axis=1))
    unseen = [k for k in range(len(task.classes)) if held[k] and not chosen[k]]
    if not unseen:
        return []
    names = ", ".join(f"{plain_label(task.classes[k])!r} ({held[k]} of {len(y_holdout)} rows are)" for k in unseen[:5])
    more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
    weigh = ", and --class-weight balanced predicts more of them" if task.class_weight == "none" else ""
    return [f"no holdout row is predicted {names}{more}: the model makes it the likeliest class for no row; "
            f"the probability columns still rank its rows{weigh}"]


def _candidates(out_of_fold: OutOfFold, storage, families: Collection[str] | None = None
                ) -> tuple[list[Member], np.ndarray]:
    """The kept trials of `families` that are complete in their study with the same score (a
    vector from another study under the same run directory is not one of this search's models)."""
    studies: dict[str, dict[int, optuna.trial.FrozenTrial]] = {}
    members, vectors = [], []
    for family, number, vector in out_of_fold.vectors():
        if families is not None and family not in families:  # an earlier run's --models, not this one's
            continue
        if family not in studies:
            study = optuna.load_study(study_name=family, storage=storage)
            studies[family] = {t.number: t for t in study.get_trials(deepcopy=False)}
        trial = studies[family].get(number)
        if trial is None or trial.state != optuna.trial.TrialState.COMPLETE \
                or abs(trial.value - out_of_fold.trials[family][number]) > 1e-12:
            continue
        members.append(Member(family, number, params_from_trial(family, trial),
                              _rounds(trial.user_attrs.get("best_rounds", [])),
                              list(trial.user_attrs.get("fold_seconds", [])), float(trial.value),
                              train_rows=trial.user_attrs.get("train_rows")))
        vectors.append(vector)
    return members, np.array(vectors)


def _kept_elsewhere(storage, single: Member, out_of_fold: OutOfFold | None) -> str | None:
    """Why the best model's kept files are not here, where another run (an earlier one, or another
    driver now) on a shared storage trained it: its run directory (the trial records it) keeps them.
    None where its predictions are here, whatever path the trial recorded (a run folder moved)."""
    if out_of_fold is not None and single.trial in out_of_fold.trials.get(single.family, {}):
        return None
    trials = optuna.load_study(study_name=single.family, storage=storage).get_trials(deepcopy=False)
    there = next((t.user_attrs.get(RUN_DIR) for t in trials if t.number == single.trial), None)
    here = out_of_fold.directory.parent if out_of_fold is not None else None
    if there is None or (here is not None and Path(there) == here.resolve()):
        return None
    return (f"the best model ({single.family} trial {single.trial}) was trained by another run on this storage, "
            f"whose run directory {there} keeps its out-of-fold predictions and fold models")


def _saved_files(directory: Path, answer: dict[str, Any], staged: Path) -> dict[str, Any]:
    """Where a retrained model's file, or a fold-served model's K files, lie under best_model/."""
    if answer.get("model_files"):
        return {"model_files": [str((directory / f).relative_to(staged)) for f in answer["model_files"]]}
    return {"model_file": str((directory / answer["model_file"]).relative_to(staged))}


def _rounds(best_rounds: list[int]) -> int | None:
    return max(1, int(round(float(np.mean(best_rounds))))) if best_rounds else None


def _describe(member: Member) -> dict[str, Any]:
    return {"family": member.family, "trial": member.trial, "weight": member.weight,
            "cv_score_mean": member.cv_score_mean, "params": member.params}

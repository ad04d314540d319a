"""The pool's queue order and task sizes, as pure functions: no worker processes."""
from __future__ import annotations

from trialfuse.catalog import FAMILIES
from trialfuse.transport.fold_queue import FoldJob, TrialKey, take_task


def jobs(family: str, position: int, folds: int = 3, diagonal: bool = True) -> list[FoldJob]:
    return [FoldJob(TrialKey(family, position), {}, fold, 0, position, FAMILIES[family].cost, diagonal)
            for fold in range(folds)]


def order(queue: list[FoldJob]) -> list[tuple[str, int, int]]:
    return [(job.family, job.position, job.fold) for job in sorted(queue, key=FoldJob.queue_key)]


def test_trials_the_pruner_cannot_judge_run_whole_oldest_first_cheapest_family_first():
    queue = jobs("nn", 0, diagonal=False) + jobs("lightgbm", 0, diagonal=False) + jobs("lightgbm", 1, diagonal=False)
    assert order(queue) == [("lightgbm", 0, 0), ("lightgbm", 0, 1), ("lightgbm", 0, 2),
                            ("nn", 0, 0), ("nn", 0, 1), ("nn", 0, 2),
                            ("lightgbm", 1, 0), ("lightgbm", 1, 1), ("lightgbm", 1, 2)]


def test_prunable_trials_spread_their_folds_so_first_folds_come_back_first():
    queue = jobs("xgboost", 5) + jobs("xgboost", 6) + jobs("xgboost", 7)
    assert order(queue) == [("xgboost", 5, 0), ("xgboost", 6, 0), ("xgboost", 5, 1), ("xgboost", 7, 0),
                            ("xgboost", 6, 1), ("xgboost", 5, 2), ("xgboost", 7, 1), ("xgboost", 6, 2),
                            ("xgboost", 7, 2)]


def test_nn_folds_go_one_per_task_unless_they_fuse():
    queue = sorted(jobs("nn", 0, folds=4) + jobs("nn", 1, folds=4) + jobs("lightgbm", 9), key=FoldJob.queue_key)
    task, rest = take_task(queue, idle_others=0, fuses=False, per_task=lambda family: 20)
    assert len(task) == 1 and len(rest) == len(queue) - 1
    task, rest = take_task(queue, idle_others=1, fuses=True, per_task=lambda family: 20)
    assert len(task) == 4 and {job.family for job in task} == {"nn"}  # half: the other idle worker gets the rest
    assert len(rest) == len(queue) - 4 and sum(job.family == "nn" for job in rest) == 4
    task, _ = take_task(queue, idle_others=0, fuses=True, per_task=lambda family: 3)
    assert len(task) == 3


def test_tree_folds_always_go_one_per_task():
    queue = sorted(jobs("catboost", 0) + jobs("nn", 0), key=FoldJob.queue_key)
    task, rest = take_task(queue, idle_others=0, fuses=True, per_task=lambda family: 20)
    assert [(job.family, job.fold) for job in task] == [("catboost", 0)] and len(rest) == 5


def test_near_the_deadline_a_trial_under_way_goes_before_one_not_started():
    """A 30 s budget lost its CatBoost trial: its last two folds queued behind the NN's first."""
    catboost = [job for job in jobs("catboost", 0, folds=5) if job.fold >= 3]
    queue = sorted(jobs("nn", 0, diagonal=False) + catboost, key=FoldJob.queue_key)
    task, _ = take_task(queue, idle_others=0, fuses=False, per_task=lambda family: 20)
    assert task[0].family == "nn"  # in queue order
    task, rest = take_task(queue, idle_others=0, fuses=False, per_task=lambda family: 20, under_way={("catboost", 0)})
    assert [(job.family, job.fold) for job in task] == [("catboost", 3)] and len(rest) == len(queue) - 1


def test_near_the_deadline_a_fused_task_takes_the_folds_of_trials_under_way_first():
    queue = sorted(jobs("nn", 0, folds=4) + jobs("nn", 1, folds=4), key=FoldJob.queue_key)
    under_way = {("nn", 1)}
    task, _ = take_task(queue, idle_others=0, fuses=True, per_task=lambda family: 4, under_way=under_way)
    assert {job.trial for job in task} == {("nn", 1)} and len(task) == 4

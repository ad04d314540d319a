"""What the terminal shows of the workers while a run goes."""
from __future__ import annotations

from trialfuse.present.progress import device_lines


def test_each_gpu_worker_has_a_line_and_cpu_workers_are_summed_up_by_family():
    activity = [("cuda:0", "nn 10 folds of 3 trials"), ("cuda:1", "idle"), ("cpu", "lightgbm trial 4 fold 2"),
                ("cpu", "idle"), ("cpu", "lightgbm trial 5 fold 0"), ("cpu", "retrain xgboost")]
    assert device_lines(activity) == ["cuda:0   nn 10 folds of 3 trials", "cuda:1   idle",
                                      "cpu      4 workers: 1 idle, 2 lightgbm, 1 retrain"]


def test_a_cpu_only_machine_has_one_line():
    assert device_lines([("cpu", "idle"), ("cpu", "nn trial 0 fold 1")]) == ["cpu      2 workers: 1 idle, 1 nn"]

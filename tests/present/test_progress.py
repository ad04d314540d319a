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


def test_the_display_ends_its_last_line_where_stderr_is_a_file():
    """Into a log file the workers' line had no newline, and the error printed next joined it:
    "cpu      2 workers: 2 lightgbmtrialfuse: error: no model finished ..."."""
    import io

    from rich.console import Console

    from trialfuse.present.progress import RichReporter

    log = io.StringIO()
    with RichReporter(Console(file=log, force_terminal=False, width=100)) as reporter:
        reporter.family_started("lightgbm", 3)
    assert log.getvalue().endswith("\n") and "lightgbm" in log.getvalue()

"""What the terminal shows: a progress bar per family while it runs, a ranked table at the end."""
from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trialfuse.driver import run_dir
from trialfuse.driver.run_record import RunRecord, cv_of
from trialfuse.driver.trial_records import FamilyResult
from trialfuse.task import NUMBERS, Task, four_places


class RichReporter:
    """Progress bars on stderr, so stdout stays clean for `--json`: one per family, then a line
    per GPU worker and one for the CPU workers saying what each is training."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[family]:<9}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("trials  best CV {task.fields[metric]} {task.fields[best]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.task = NUMBERS  # the run's task, once decided: scores are shown in its metric
        self.devices = Progress(TextColumn("[dim]{task.description}"), console=self.console)
        self.live = Live(Group(self.progress, self.devices), console=self.console, refresh_per_second=4)
        self._stopped = threading.Event()

    def __enter__(self) -> RichReporter:
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self.live.stop()
        if not self.console.is_terminal:  # rich ends the display's last line on a terminal only: an error
            self.console.line()  # printed next, into a log file, joined it

    def watch(self, activity: Callable[[], list[tuple[str, str]]]) -> None:
        """Show the workers' activity, read twice a second until the run ends."""
        rows: list[Any] = []

        def refresh() -> None:
            while not self._stopped.wait(0.5):
                lines = device_lines(activity())
                while len(rows) < len(lines):
                    rows.append(self.devices.add_task(""))
                for row, line in zip(rows, lines, strict=False):
                    self.devices.update(row, description=line)

        threading.Thread(target=refresh, name="progress-devices", daemon=True).start()

    def task_decided(self, task: Task, line: str | None) -> None:
        self.task = task
        if line:
            self.stage(line)

    def family_started(self, family: str, trials: int | None) -> None:  # None: as many as the budget allows
        self.tasks[family] = self.progress.add_task(family, total=trials, family=family, best="-",
                                                    metric=self.task.metric.label)

    def trial_finished(self, result: FamilyResult) -> None:
        done = result.trials_complete + result.trials_failed + result.trials_pruned
        best = self.task.show(result.cv_score_mean) or "-"
        self.progress.update(self.tasks[result.family], completed=done, best=best)

    def family_finished(self, result: FamilyResult) -> None:
        self.trial_finished(result)
        if result.status != "ok":
            self.console.print(f"[yellow]{result.family} skipped: {result.reason}")

    def stage(self, message: str) -> None:
        self.console.print(f"[dim]{message}")


def device_lines(activity: list[tuple[str, str]]) -> list[str]:
    """One line per GPU worker; the CPU workers summed up by family (there may be dozens)."""
    lines = [f"{device:<8} {doing}" for device, doing in activity if device != "cpu"]
    cpu = Counter(doing.split(" ")[0] for device, doing in activity if device == "cpu")
    if cpu:
        total = sum(cpu.values())
        lines.append(f"{'cpu':<8} {total} workers: " + ", ".join(f"{n} {what}" for what, n in sorted(cpu.items())))
    return lines


def comparison_table(record: RunRecord) -> Table:
    """Families ranked by best CV score, skipped ones last, a saved ensemble above them; the
    holdout score for what was scored on it. Scores in the task's metric, as people read it."""
    task, label = record.task, record.task.metric.label
    table = Table(title=f"trialfuse: {record.rows} rows, {record.folds}-fold CV, target {record.target!r}")
    for column in ("rank", "family", f"CV {label} (mean ± sd)", f"holdout {label}", "trials ok / pruned / failed",
                   "train s"):
        table.add_column(column, justify="left" if column == "family" else "right")
    ranked = record.ranking + [f for f in record.families if f not in record.ranking]
    holdout = record.holdout_scores()
    ensemble = record.ensemble
    if ensemble and ensemble["chosen"]:
        # its inner out-of-fold predictions' fold mean, as the family rows read, beside the best single
        # model scored the same way (pooled, a new user's RMSE run read 6.39 above families of 5.8-6.7)
        mean, spread, single = cv_of(ensemble)
        figure = task.show(mean) + ("" if math.isnan(spread) else f" ± {spread:.4f}")
        table.add_row("*", "ensemble", f"{figure} out-of-fold (best single {task.show(single)})",
                      task.show(record.holdout_score), f"{len(ensemble['members'])} members", "")
    for rank, name in enumerate(ranked, start=1):
        fam = record.families[name]
        counts = f"{fam.trials_complete}/{fam.trials_pruned}/{fam.trials_failed}"
        if fam.status != "ok":
            table.add_row("-", name, f"skipped: {fam.reason}", "", counts, fam.train_seconds_text)
            continue
        table.add_row(str(rank), name, f"{task.show(fam.cv_score_mean)} ± {fam.cv_score_sd:.4f}",
                      task.show(holdout.get(name)), counts, fam.train_seconds_text)
    if record.prior_score is not None:
        table.add_row("", f"prior ({task.prior_name})", "", four_places(record.prior_score), "", "")
    return table


def show_summary(console: Console, record: RunRecord) -> None:
    """The end of a run for the person watching: the comparison, the winner and where it is, the warnings."""
    console.print(comparison_table(record))
    console.print(f"winner: [bold]{record.winner}[/]  holdout {record.task.metric.label} "
                  f"{record.task.show(record.holdout_score)}{record.prior_shown()}  "
                  f"({record.seconds:.0f} s)  saved in {record.out}/best_model")
    for warning in record.warnings:
        console.print(f"[yellow]warning: {warning}")
    if (Path(record.out) / run_dir.REPORT).exists():  # not where the API was asked for none, or it failed
        console.print(f"report: {Path(record.out) / run_dir.REPORT}")

"""Work outside the fold queue, on the pool's workers: retrain the winners, probe, explain.

These run after (or beside) the search, one command per worker at a time, under the same
timeout and restart-once rule as a fold (`WorkerPool.run_on`). Several retrains share the
workers through a `concurrent.futures` executor: the longest first, each on a worker that
takes its family, and one whose worker's place is gone goes to another worker.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trialfuse.transport import placement, protocol
from trialfuse.transport.contracts import SlotGone, Worker
from trialfuse.transport.placement import WorkerKind


class SharedWorkers(Protocol):
    """What a side job asks of the pool (`WorkerPool` keeps it): its workers whose place is not
    gone, which of them trains a family, a private folder for rows to send, and one command
    on a worker under the pool's timeout and restart-once rule, logged on its timeline."""

    @property
    def scratch(self) -> Path: ...

    def live_workers(self) -> list[Worker]: ...

    def takes(self, worker: Worker, family: str) -> bool: ...

    def run_on(self, worker: Worker, what: str, family: str, command: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class Retrain:
    """One model to train on all search rows (or `train_rows` of them) for a fixed round count and
    save in `directory` (or, with `fold_files`, the search's fold models to copy there)."""

    family: str
    params: dict[str, Any]
    rounds: int | None
    directory: Path
    seed: int
    seconds: float = 0.0  # its estimated time: the longest starts first when several share the workers
    fold_files: list[Path] | None = None  # served as these K fold models' mean instead: nothing is trained
    train_rows: int | None = None  # trained on a sample of this many rows, as its trial's folds were
    deadline: float | None = None  # the wall time past which its training stops: a `cut` answer


def retrain(pool: SharedWorkers, models: list[Retrain], X_score: np.ndarray) -> list[dict[str, Any]]:
    """Train each model on all search rows, save it to its directory, and predict X_score with
    the saved model; the answers in input order (an error answer for a model that failed).
    One model alone gets every core of its machine; several run at once, one per worker that
    takes its family, the longest first."""
    score_path = pool.scratch / "score_rows.npz"
    np.savez(score_path, X=X_score)
    answers: list[dict[str, Any] | None] = [None] * len(models)
    waiting = sorted(range(len(models)), key=lambda i: -models[i].seconds)
    idle = pool.live_workers()
    running: dict[Future, tuple[Worker, int]] = {}
    with ThreadPoolExecutor(max_workers=len(idle), thread_name_prefix="retrain") as executor:
        while True:
            for worker in list(idle):
                mine = next((i for i in waiting if pool.takes(worker, models[i].family)), None)
                if mine is not None:
                    waiting.remove(mine)
                    idle.remove(worker)
                    command = _retrain_command(models[mine], worker, score_path, alone=len(models) == 1)
                    what = "save" if models[mine].fold_files else "retrain"  # served fold models: nothing trains
                    running[executor.submit(pool.run_on, worker, what, models[mine].family, command)] = (worker, mine)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                worker, index = running.pop(future)
                try:
                    answers[index] = future.result()
                except SlotGone:  # another worker retrains it; this one is done
                    worker.retired = True
                    waiting.insert(0, index)
                    continue
                except Exception as exc:  # every model is answered, whatever happened to its worker
                    answers[index] = protocol.error(f"{type(exc).__name__}: {exc}")
                idle.append(worker)
    return [a if a is not None else protocol.error("no worker takes this family") for a in answers]


def _retrain_command(model: Retrain, worker: Worker, score_path: Path, alone: bool) -> dict[str, Any]:
    one_machine = alone and not worker.slot.node  # then it gets every core here
    threads = placement.usable_cores() if one_machine else worker.slot.threads
    return protocol.retrain(model.family, model.params, model.rounds, str(model.directory), str(score_path),
                            model.seed, threads, [str(f) for f in model.fold_files] if model.fold_files else None,
                            model.train_rows, model.deadline)


def diagnose(pool: SharedWorkers, family: str, params: dict[str, Any], seed: int,
             deadline: float | None = None) -> dict[str, Any]:
    """The family's diagnostics probe for `params` on the first fold (the NN's: engine.diagnostics),
    on a worker that trains the family, stopped at `deadline` (wall time) if it runs that long."""
    live = pool.live_workers()
    worker = next((w for w in live if pool.takes(w, family)), live[0])
    answer = pool.run_on(worker, "diagnose", family, protocol.diagnose(family, params, seed, placement.usable_cores(),
                                                                       deadline=deadline))
    if answer.get("status") != "complete":
        raise RuntimeError(f"diagnose failed: {answer.get('error')}")
    return answer["diagnostics"]


def explain(pool: SharedWorkers, model_dir: Path, X: np.ndarray, y: np.ndarray, seed: int,
            deadline: float | None = None) -> dict[str, Any]:
    """The saved model in `model_dir` explained on rows X, y (see engine.importance), on a CPU
    worker if there is one: it predicts many small batches, which a GPU does not speed up.
    The last one: the NN's diagnostics probe, which may run at the same time, takes the first.
    TimeoutError where not even the least explanation fits before `deadline` (wall time)."""
    rows_path = pool.scratch / "explain_rows.npz"
    np.savez(rows_path, X=X, y=y)
    live = pool.live_workers()
    worker = next((w for w in reversed(live) if w.slot.kind == WorkerKind.CPU), live[-1])
    answer = pool.run_on(worker, "explain", "winner", protocol.explain(str(model_dir), str(rows_path), seed, deadline))
    if answer.get("status") == protocol.OUT_OF_TIME:
        raise TimeoutError(answer.get("error"))
    if answer.get("status") != "complete":
        raise RuntimeError(f"explain failed: {answer.get('error')}")
    return answer["explanation"]

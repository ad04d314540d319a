"""Out-of-fold predictions: every completed trial's K validation predictions, put together
into one vector over the search rows. They are what the ensemble is chosen on, so an
ensemble of the search's own models costs no training beyond its members' retrain.

Layout, in the run directory:
- `oof/<family>-<trial>.npy`: float32, one value (or, for classes, a row of K class
  probabilities) per search row, in search-row order (the
  table's rows without the holdout, in table order: row i is the i-th row not listed in
  holdout_indices.json), each predicted by the model of the fold that held it out.
- `oof/index.json`: `{"folds": <fingerprint of the fold assignment>, "rows": n,
  "trials": {"<family>": {"<trial>": cv_score}}}`, the trials whose vectors are kept.

- `oof/models/<family>-<trial>/fold-<k>/model.<ext>`: where the run serves models as the
  mean of their K fold models (`--no-refit`), each kept trial's fold models, saved by the
  workers during the search: natively for the trees, weights and shape for the NN
  (`model.kept`, exported when served); kept and dropped with the trial's vector.

Bounded: the best KEEP_PER_FAMILY trials of each family by CV score are kept, the others'
files deleted as better ones arrive: with 20 the worst case is 80 vectors of float32 (32 MB
for 100,000 search rows), and members past the best 20 of a family almost never enter a
greedy ensemble (its picks come from the top of each family). A resumed run keeps the
vectors when its folds are the same rows; otherwise they are dropped and rebuilt.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

from trialfuse.driver import run_dir

DIRECTORY = "oof"
INDEX = "index.json"
MODELS = "models"
KEEP_PER_FAMILY = 20


def folds_fingerprint(folds: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """A short hash of which search row is validated in which fold."""
    digest = hashlib.sha256()
    for _, val in folds:
        digest.update(np.asarray(val, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]


class OutOfFold:
    """The kept out-of-fold vectors of one run directory."""

    def __init__(self, out: Path, folds: list[tuple[np.ndarray, np.ndarray]], keep: int = KEEP_PER_FAMILY,
                 running: set[str] = frozenset(), told: dict[str, dict[int, float]] | None = None):
        """`running`: trials ("<family>-<trial>") another driver on this run directory is training now;
        `told`: each family's complete trials and their scores in the study, where a resumed run's
        kept vectors are checked against them (a driver killed after keeping a trial's vector and
        before telling it left one whose trial was then asked again: it held a place among the best)."""
        self.directory = Path(out) / DIRECTORY
        self.val_rows = [np.asarray(val) for _, val in folds]
        self.rows = sum(len(v) for v in self.val_rows)
        self.keep = keep
        self.fingerprint = folds_fingerprint(folds)
        self.trials: dict[str, dict[int, float]] = {}
        index = self.directory / INDEX
        if index.exists():
            saved = run_dir.read_json(index)
            if saved.get("folds") == self.fingerprint and saved.get("rows") == self.rows:
                self.trials = {family: {int(t): float(v) for t, v in kept.items()}
                               for family, kept in saved.get("trials", {}).items()}
        if told is not None:
            self.trials = {family: {t: score for t, score in kept.items() if f"{family}-{t}" in running
                                    or abs(told.get(family, {}).get(t, np.nan) - score) <= 1e-12}
                           for family, kept in self.trials.items()}
        self.directory.mkdir(parents=True, exist_ok=True)
        self.remove_unkept(running)

    def add(self, family: str, trial: int, cv_score: float, fold_predictions: list[list[float]]) -> None:
        """Keep a completed trial's vector if it is among its family's best; drop the one it displaces."""
        kept = self.trials.setdefault(family, {})
        if any(p is None for p in fold_predictions) \
                or (len(kept) >= self.keep and cv_score <= min(kept.values())):  # not sent, or not among the best
            self.discard(family, trial)
            return
        vector = np.full((self.rows, *np.shape(fold_predictions[0])[1:]), np.nan, dtype=np.float32)
        for val, predictions in zip(self.val_rows, fold_predictions, strict=True):
            vector[val] = np.asarray(predictions, dtype=np.float32)
        run_dir.write_array(self._path(family, trial), vector)
        kept[trial] = float(cv_score)
        while len(kept) > self.keep:
            worst = min(kept, key=lambda t: (kept[t], -t))
            del kept[worst]
            self._path(family, worst).unlink(missing_ok=True)
            self.discard(family, worst)
        run_dir.write_json(self.directory / INDEX, {"folds": self.fingerprint, "rows": self.rows,
                                                    "trials": self.trials})

    def vectors(self) -> list[tuple[str, int, np.ndarray]]:
        """(family, trial, float64 vector [rows] or [rows, K]) of every kept trial: families by name,
        best CV first within one."""
        out = []
        for family, kept in sorted(self.trials.items()):  # one order whatever finished first
            for trial in sorted(kept, key=lambda t: (-kept[t], t)):
                if self._path(family, trial).exists():  # another driver on the run directory may have dropped it
                    out.append((family, trial, np.load(self._path(family, trial)).astype(np.float64)))
        return out

    def discard(self, family: str, trial: int) -> None:
        """Drop the fold models of a trial that is not kept (pruned, failed, or not among the best)."""
        shutil.rmtree(self.models_dir(family, trial), ignore_errors=True)

    def models_dir(self, family: str, trial: int) -> Path:
        return self.directory / MODELS / f"{family}-{trial}"

    def fold_files(self, family: str, trial: int) -> list[Path] | None:
        """A kept trial's K fold model files, in fold order; None unless all K were saved."""
        folds = range(len(self.val_rows))
        found = [sorted((self.models_dir(family, trial) / f"fold-{k}").glob("model.*")) for k in folds]
        return [files[0] for files in found] if all(len(files) == 1 for files in found) else None

    def _path(self, family: str, trial: int) -> Path:
        return self.directory / f"{family}-{trial}.npy"

    def remove_unkept(self, running: set[str] = frozenset()) -> None:
        """Files the index does not list: an older or killed run's, or fold models a trial's
        last folds saved after it was pruned; not the fold models of `running` trials
        ("<family>-<trial>": another driver on the same run directory may be training them)."""
        listed = {self._path(family, t).name for family, kept in self.trials.items() for t in kept}
        for path in self.directory.glob("*.npy"):
            if path.name not in listed:
                path.unlink(missing_ok=True)
        for path in (self.directory / MODELS).glob("*"):
            if f"{path.name}.npy" not in listed and path.name not in running:
                shutil.rmtree(path, ignore_errors=True)

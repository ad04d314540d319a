"""`--fuse` and `--precision`: how many NN models train as one stacked model, and what its
matmuls compute in. Parsed once, carried unchanged from the command line through the worker
protocol to the fused trainer (engine/fused/precision.py says what each precision does)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from trialfuse.errors import UserError


@dataclass(frozen=True)
class Fuse:
    """`auto`: stacked where measured faster (a GPU), one at a time on a CPU; `off`: one at a
    time always (the source's kill switch); `on`: stacked, at most `max_batch` models per batch
    (None: as many as free device memory holds)."""

    mode: Literal["auto", "off", "on"] = "auto"
    max_batch: int | None = None
    precision: str = "auto"  # one of PRECISIONS: the stacked batches' matmuls

    def with_precision(self, text: str) -> Fuse:
        return replace(self, precision=check_precision(text))

    @classmethod
    def parse(cls, text: str | int | Fuse) -> Fuse:
        """`auto`, `off`, `on` or a positive number of models (N: stacked, at most N per batch)."""
        if isinstance(text, Fuse):
            return text
        value = str(text).strip().lower()
        if value in ("auto", "off", "on"):
            return cls(value)
        if value.isdigit() and int(value) > 0:
            return cls("on", int(value))
        raise UserError(f"--fuse must be auto, off, on or a positive number of models, got {text!r}")

    def __str__(self) -> str:  # the option as the user wrote it (results.json)
        return self.mode if self.mode != "on" else str(self.max_batch or "on")

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "max_batch": self.max_batch, "precision": self.precision}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Fuse:
        """The protocol's form (None: the default; the source's true / false: source_dialect.py)."""
        if isinstance(value, dict):
            return cls(value.get("mode", "auto"), value.get("max_batch"), value.get("precision", "auto"))
        return cls()


PRECISIONS = ("auto", "fp32", "tf32", "bf16")
AUTO = Fuse()  # the default everywhere


def check_precision(text: str) -> str:
    """`--precision` as one of PRECISIONS; UserError (exit 2) names them."""
    value = str(text).strip().lower()
    if value not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {text!r}")
    return value

"""`--precision`: what the fused trainer's matmuls compute in. Weights, Adam's moments,
BatchNorm and its statistics, the loss and early stopping stay in the training dtype
(float32) in every mode; only the matmuls' inputs and outputs change:

- `fp32`: float32 matmuls (on an NVIDIA GPU without tensor cores' TF32: SIMT kernels);
- `tf32`: float32 tensors, the GPU's TF32 tensor cores (10-bit mantissa products);
- `bf16`: bfloat16 inputs and outputs (8-bit mantissa), float32 accumulation, half the
  activation bytes for every pass over [M, N, H];
- `auto`: fp32 for now. On an H200 (2026-12-04) neither bf16 nor TF32 has yet bought time at
  98,000 rows (bench/results/2026-12-04-h200-*.json): the default changes when a bench shows one
  faster within the accuracy rule (mean R² within 0.002 of float32 one at a time, worst 0.02).

A CPU and float64 training always resolve to fp32: the "fused equals one at a time"
contract is proven there.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from trialfuse.fuse import check_precision

GPU_DEFAULT = "fp32"


@dataclass(frozen=True)
class Precision:
    name: str = "auto"

    @classmethod
    def parse(cls, text: str | Precision) -> Precision:
        if isinstance(text, Precision):
            return text
        return cls(check_precision(text))

    def resolve(self, device: torch.device, dtype: torch.dtype) -> Precision:
        """`auto` made concrete for a device and training dtype; a CPU or float64 always fp32."""
        if device.type != "cuda" or dtype != torch.float32:
            return FP32
        return Precision(GPU_DEFAULT) if self.name == "auto" else self

    @property
    def matmul_dtype(self) -> torch.dtype | None:
        """What the matmuls take and give (None: the training dtype)."""
        return torch.bfloat16 if self.name == "bf16" else None

    @contextmanager
    def matmuls(self) -> Iterator[None]:
        """float32 matmuls as TF32 inside (`tf32`), exact float32 otherwise; restored after."""
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high" if self.name == "tf32" else "highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(before)

    def __str__(self) -> str:
        return self.name


FP32 = Precision("fp32")

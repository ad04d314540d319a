"""Which devices this machine has, found without importing torch.

Order of evidence: CUDA_VISIBLE_DEVICES, then nvidia-smi, else none. The driver uses this
to decide how many workers to start and where to pin each.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from trialfuse.errors import UserError


def detect_gpus() -> list[str]:
    """GPU ids visible to this process, as strings ('0', '1', ...); empty on a CPU-only machine."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return ids if shutil.which("nvidia-smi") or ids else []
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def resolve_devices(spec: str) -> tuple[str, int]:
    """Turn `--devices` (auto | cpu | N | cuda:0,1) into (device, worker count).

    device is "cpu" or "cuda:<ids>"; on the CPU the count is how many workers share the cores.
    """
    spec = spec.strip().lower()
    cores = os.cpu_count() or 1
    if spec == "auto":
        gpus = detect_gpus()
        return (f"cuda:{','.join(gpus)}", len(gpus)) if gpus else ("cpu", cores)
    if spec == "cpu":
        return "cpu", cores
    if spec.isdigit() and int(spec) > 0:
        return "cpu", int(spec)
    if spec.startswith("cuda:"):
        ids = [i.strip() for i in spec[5:].split(",")]
        if ids and all(i.isdigit() for i in ids):
            return f"cuda:{','.join(ids)}", len(ids)
    raise UserError(f"--devices must be auto, cpu, a worker count or cuda:IDS (e.g. cuda:0,1), got {spec!r}")

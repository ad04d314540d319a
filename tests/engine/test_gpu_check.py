"""bench/gpu_check, the one command that proves the GPU path, runs here in its dry mode
(the GPU checks with CPU stand-ins), so it works the first time a GPU is lent."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICK = "environment,worker_ready,oom_recovery,sticky_error_exits,saved_model_round_trip"


def test_gpu_check_passes_its_dry_run(tmp_path):
    report = tmp_path / "gpu_check.json"
    proc = subprocess.run([str(ROOT / "bench" / "gpu_check"), "--device", "cpu", "--dry", "--only", QUICK,
                           "--save", str(report)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    checks = json.loads(report.read_text())["checks"]
    assert set(checks) == set(QUICK.split(","))
    assert {c["status"] for c in checks.values()} == {"PASS"}

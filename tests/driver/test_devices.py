"""Devices are found without torch, and each GPU worker sees exactly its one GPU."""
from __future__ import annotations

import numpy as np
import pytest

from trialfuse.driver.devices import detect_gpus, resolve_devices
from trialfuse.errors import UserError
from trialfuse.transport.process_pool import WorkerPool


def test_cuda_visible_devices_comes_first(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert detect_gpus() == ["2", "3"]
    assert resolve_devices("auto") == ("cuda:2,3", 2)


def test_nvidia_smi_when_no_env(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 0\necho 1\n")
    fake.chmod(0o755)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_gpus() == ["0", "1"]


def test_no_gpu_means_cpu_workers(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_gpus() == []
    assert resolve_devices("auto")[0] == "cpu"
    assert resolve_devices("3") == ("cpu", 3)
    with pytest.raises(UserError):
        resolve_devices("gpu please")


def test_each_gpu_worker_is_pinned_to_one_gpu(tmp_path):
    folds = [(np.arange(5), np.arange(5, 10))]
    pool = WorkerPool(np.zeros((10, 2)), np.zeros(10), folds, device="cuda:3,5", workers=2, scratch=tmp_path)
    try:
        assert [w.env["CUDA_VISIBLE_DEVICES"] for w in pool._all] == ["3", "5"]
        cpu = WorkerPool(np.zeros((10, 2)), np.zeros(10), folds, device="cpu", workers=2, scratch=tmp_path / "b")
        assert [w.env["CUDA_VISIBLE_DEVICES"] for w in cpu._all] == ["", ""]
        cpu.close()
    finally:
        pool.close()
    assert not list(tmp_path.glob(".pool-*"))  # scratch files are removed with the pool

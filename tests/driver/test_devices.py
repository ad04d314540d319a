"""Devices are found without torch, each GPU worker sees exactly its one GPU, and a GPU
machine gets CPU workers on its other cores."""
from __future__ import annotations

import re

import numpy as np
import pytest

from trialfuse.driver.devices import describe, detect_gpus, idle_gpus_note, plan_workers, torch_has_cuda
from trialfuse.errors import UserError
from trialfuse.transport.placement import Slot, WorkerKind
from trialfuse.transport.process_pool import WorkerPool


@pytest.fixture
def nvidia_smi(monkeypatch, tmp_path):
    """A stand-in nvidia-smi that lists two GPUs, 0 and 1, first on the PATH, and a torch that
    can use them."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 0\necho 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("trialfuse.transport.placement.usable_cores", lambda: 16)
    monkeypatch.setattr("trialfuse.driver.devices.torch_has_cuda", lambda: True)


def test_gpus_that_torch_cannot_use_are_left_idle_and_said_or_refused_when_named(nvidia_smi, monkeypatch):
    """nvidia-smi lists GPUs, but this environment's torch is a CPU build (CI's is): a "GPU"
    worker would train on one CPU thread under a GPU's name. So auto plans CPU workers and says
    why, and a GPU named in --devices is refused before anything starts."""
    if pytest.importorskip("torch").cuda.is_available():
        pytest.skip("this torch has CUDA: the case is a CPU build's")
    monkeypatch.setattr("trialfuse.driver.devices.torch_has_cuda", torch_has_cuda)  # the real question
    torch_has_cuda.cache_clear()
    try:
        assert not torch_has_cuda()  # read from torch/version.py: this torch is the CPU build
        assert {s.kind for s in plan_workers("auto")} == {"cpu"} and len(plan_workers("auto")) == 16
        assert "torch here is a CPU build" in idle_gpus_note("auto") and idle_gpus_note("cpu") is None
        with pytest.raises(UserError, match="torch here is a CPU build"):
            plan_workers("cuda:0")
    finally:
        torch_has_cuda.cache_clear()


def test_nvidia_smi_finds_the_gpus_and_the_other_cores_get_cpu_workers(nvidia_smi):
    assert detect_gpus() == ["0", "1"]
    slots = plan_workers("auto")
    assert [(s.kind, s.visible) for s in slots[:2]] == [("gpu", "0"), ("gpu", "1")]
    assert [s.kind for s in slots[2:]] == ["cpu"] * 14 and all(s.threads == 1 for s in slots)
    assert describe(slots) == "cuda:0,1 + 14 cpu"


def test_cuda_visible_devices_is_what_cuda_n_counts_in(nvidia_smi, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")  # e.g. Slurm gave this job GPUs 4 and 5
    assert detect_gpus() == ["4", "5"]
    assert [s.visible for s in plan_workers("cuda:0,1") if s.kind == "gpu"] == ["4", "5"]
    assert [s.visible for s in plan_workers("cuda:1") if s.kind == "gpu"] == ["5"]
    with pytest.raises(UserError, match="sees 2 GPU"):
        plan_workers("cuda:2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,-1,5")  # CUDA stops at the first invalid entry
    assert detect_gpus() == ["4"]


def test_cuda_visible_devices_alone_is_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # a CPU-only container may set it
    monkeypatch.setenv("PATH", str(tmp_path))  # and has no nvidia-smi
    assert detect_gpus() == []
    assert {s.kind for s in plan_workers("auto")} == {"cpu"}


def test_a_gpu_named_where_there_is_none_is_refused_before_anything_starts(monkeypatch, tmp_path):
    """Before, `--devices cuda:0` on a CPU machine ran: its "GPU" worker trained on the CPU
    under cuda:0's name (the timeline said cuda:0)."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for spec in ("cuda:0", "cuda:0+cpu:2"):
        with pytest.raises(UserError, match=re.escape(f"--devices {spec}: no GPU here")):
            plan_workers(spec)


def test_a_gpu_index_past_the_machines_gpus_is_refused(nvidia_smi):
    assert [s.visible for s in plan_workers("cuda:1") if s.kind == "gpu"] == ["1"]
    with pytest.raises(UserError, match="this machine has 2 GPU"):
        plan_workers("cuda:0,2")


def test_an_exact_mix_and_the_cpu_forms(nvidia_smi, monkeypatch):
    monkeypatch.setattr("trialfuse.transport.placement.usable_cores", lambda: 8)
    assert [s.kind for s in plan_workers("cuda:0+cpu:3")] == ["gpu", "cpu", "cpu", "cpu"]
    assert [s.threads for s in plan_workers("cuda:0+cpu:3")] == [1, 2, 2, 2]  # 7 other cores over 3 workers
    assert [s.kind for s in plan_workers("cuda:0+cpu:0")] == ["gpu"]
    assert describe(plan_workers("3")) == "cpu x 3" and plan_workers("3")[0].threads == 2
    assert len(plan_workers("cpu")) == 8 and len(plan_workers("auto")) == 8
    assert len(plan_workers("cuda:0+cpu:7")) == 8 and len(plan_workers("8")) == 8
    assert plan_workers("cpu:3") == plan_workers("3") and plan_workers("CPU:1") == plan_workers("1")  # as in a mix
    for many, free in (("cuda:0+cpu:8", 7), ("9", 8)):  # more workers than cores only take turns
        with pytest.raises(UserError, match=re.escape(f"CPU workers on {free} CPU core(s) free for them")):
            plan_workers(many)
    for bad in ("gpu please", "cuda:", "cuda:0+cpu", "cuda:0+gpu:2", "0", "cpu:0", "cpu:", "cpu:two"):
        with pytest.raises(UserError):
            plan_workers(bad)


def test_each_gpu_worker_is_pinned_to_one_gpu(tmp_path):
    folds = [(np.arange(5), np.arange(5, 10))]
    slots = [Slot(WorkerKind.GPU, "3"), Slot(WorkerKind.GPU, "5"), Slot(WorkerKind.CPU, "", 2)]
    pool = WorkerPool(np.zeros((10, 2)), np.zeros(10), folds, slots=slots, scratch=tmp_path)
    try:
        assert [w.env["CUDA_VISIBLE_DEVICES"] for w in pool._all] == ["3", "5", ""]
        assert [w.env["OMP_NUM_THREADS"] for w in pool._all] == ["1", "1", "2"]
    finally:
        pool.close()
    assert not list(tmp_path.glob(".pool-*"))  # scratch files are removed with the pool


def test_the_cores_are_those_a_container_allows(tmp_path, monkeypatch):
    """os.cpu_count() counts the host's cores: in a container limited to 2 of 64 it planned 64
    workers. The CPU set and the cgroup's quota (rounded up) bound it."""
    from trialfuse.transport.placement import usable_cores

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")  # docker run --cpus 1.5
    assert usable_cores((v2,)) == 2
    v2.write_text("max 100000\n")  # no limit
    assert usable_cores((v2,)) == 64
    v1 = tmp_path / "v1" / "cpu.cfs_quota_us"
    v1.parent.mkdir()
    v1.write_text("400000\n")
    (v1.parent / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores((tmp_path / "absent", v1)) == 4
    v1.write_text("-1\n")  # cgroup v1's "no limit"
    assert usable_cores((v1,)) == 64
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})  # taskset -c 0-2
    assert usable_cores(()) == 3
    nested = tmp_path / "nested" / "cpu.max"  # a limit further up the tree binds too: the tightest counts
    nested.parent.mkdir()
    nested.write_text("100000 100000\n")
    v2.write_text("300000 100000\n")
    assert usable_cores((v2, nested)) == 1


def test_the_quota_files_follow_this_process_up_its_cgroup_tree(tmp_path):
    from trialfuse.transport.placement import CGROUP_ROOT, CGROUP_V1_QUOTA, cpu_quota_files

    proc = tmp_path / "cgroup"
    proc.write_text("0::/system.slice/job.service\n")
    assert cpu_quota_files(proc) == (CGROUP_ROOT / "system.slice/job.service/cpu.max",
                                     CGROUP_ROOT / "system.slice/cpu.max", CGROUP_ROOT / "cpu.max", CGROUP_V1_QUOTA)
    assert cpu_quota_files(tmp_path / "absent") == (CGROUP_ROOT / "cpu.max", CGROUP_V1_QUOTA)

"""Faults on demand, so tests can prove a run survives them. The only module tests reach into.

TRIALFUSE_INJECT_FAULT (inherited by workers) names one fault:
- "<kind>:<place>[:<times>:<counter file>]": at a named place — a family's training in a
  worker (`nn`, `xgboost`, ...; `diagnose`), or `publish` / `results` in the driver's
  final writes — `fail` raises, `hang` never answers, `garble` writes a non-JSON line to
  stdout, `notobject` a JSON line that is not an object, `die` exits at once (like
  kill -9), `cudaerror` raises what a broken CUDA context raises (an illegal memory access).
  With a counter file the fault strikes only its first <times> occurrences, counted across
  processes.
- "oom:N": a fused NN batch of more than N models runs out of memory.
Production code calls `strike(place)` at its fault points and asks `out_of_memory(models)`
before a fused batch; both return at once when the variable is unset.
"""
from __future__ import annotations

import os
import sys
import time

FAULT_ENV = "TRIALFUSE_INJECT_FAULT"


def strike(place: str) -> None:
    """The fault named for `place`, if one is set (see the module docstring)."""
    spec = os.environ.get(FAULT_ENV, "").split(":")
    if len(spec) < 2 or spec[1] != place or spec[0] == "oom":
        return
    if len(spec) == 4 and _count(spec[3]) >= int(spec[2]):
        return
    kind = spec[0]
    if kind == "fail":
        raise RuntimeError(f"injected fault for {place}")
    if kind == "cudaerror":
        raise RuntimeError(f"CUDA error: an illegal memory access was encountered (injected for {place})")
    if kind == "hang":
        time.sleep(10**6)
    if kind == "garble":
        sys.__stdout__.write("%% not a protocol line %%\n")
        sys.__stdout__.flush()
    if kind == "notobject":
        sys.__stdout__.write("[1, 2]\n")
        sys.__stdout__.flush()
    if kind == "die":
        os._exit(9)


def out_of_memory(models: int) -> bool:
    """True if a fused batch of `models` is over the "oom:N" limit (the engine then raises
    torch's own out-of-memory error, so this module never loads torch)."""
    spec = os.environ.get(FAULT_ENV, "")
    return spec.startswith("oom:") and models > int(spec[4:])


def _count(counter_path: str) -> int:
    """Occurrences seen before this one, counted in a locked file shared by every process."""
    import fcntl

    with open(counter_path, "a+") as counter:
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.seek(0)
        seen = int(counter.read() or 0)
        counter.seek(0)
        counter.truncate()
        counter.write(str(seen + 1))
    return seen

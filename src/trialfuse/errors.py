"""Errors the user caused, as opposed to faults of ours.

A `UserError` becomes one line on stderr and exit code 2 in the CLI; everything else
is an internal failure (exit code 1).
"""
from __future__ import annotations

import os
import sys
import time


class UserError(Exception):
    """Bad input or usage: reported as one clear line, never as a traceback."""


# Faults on demand, for the fault tests only: "oom:N" (fused_train), and
# "<fail|hang|garble|die>:<place>[:<times>:<counter file>]" (inject_fault).
FAULT_ENV = "TRIALFUSE_INJECT_FAULT"


def inject_fault(place: str) -> None:
    """Faults on demand, so tests can prove a run survives them. TRIALFUSE_INJECT_FAULT is
    "<kind>:<place>[:<times>:<counter file>]"; a place is a family's training in a worker, or
    `publish` / `results` in the driver's final writes. Kinds: fail (raise), hang (never
    answer), garble (write a non-JSON line to stdout) or die (exit at once, like kill -9);
    with a counter file the fault strikes only its first <times> occurrences, across processes."""
    spec = os.environ.get(FAULT_ENV, "").split(":")
    if len(spec) < 2 or spec[1] != place:
        return
    if len(spec) == 4:
        import fcntl

        with open(spec[3], "a+") as counter:  # locked: workers count occurrences together
            fcntl.flock(counter, fcntl.LOCK_EX)
            counter.seek(0)
            seen = int(counter.read() or 0)
            counter.seek(0)
            counter.truncate()
            counter.write(str(seen + 1))
        if seen >= int(spec[2]):
            return
    kind = spec[0]
    if kind == "fail":
        raise RuntimeError(f"injected fault for {place}")
    if kind == "hang":
        time.sleep(10**6)
    if kind == "garble":
        sys.__stdout__.write("%% not a protocol line %%\n")
        sys.__stdout__.flush()
    if kind == "die":
        os._exit(9)


"""`--ray ADDRESS` where no cluster answers: one line and exit 2 before anything is made,
not Ray's minutes of retrying ("Failed to connect to GCS ... within 5 seconds") past --timeout."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from helpers import CLI_CODE

pytest.importorskip("ray", reason="--ray needs Ray (pip install 'trialfuse[ray]')")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again once the socket is: nothing listens there


@pytest.mark.parametrize("where", ["a name that resolves nowhere", "a closed port"])
def test_an_address_nothing_answers_at_is_refused_in_one_line_before_training(survivors_csv, tmp_path, where):
    address = "nowhere.invalid:1234" if where.startswith("a name") else f"127.0.0.1:{_closed_port()}"
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", CLI_CODE, "run", str(survivors_csv), "--target", "score",
                           "--models", "lightgbm", "--trials", "1", "--timeout", "10s", "--out", str(out),
                           "--ray", address], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and f"--ray {address}: cannot reach a Ray cluster" in errors[0], proc.stderr
    assert "Failed to connect to GCS" not in proc.stderr
    assert not out.exists()


def test_the_address_probed_is_the_one_ray_dials(monkeypatch):
    """RAY_ADDRESS counts only for `auto`, as in ray.init: a stale export refused a live --ray
    HOST:PORT, naming an address the user never gave (and let a dead one through)."""
    from trialfuse.transport.ray_workers import _bootstrap_address

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert _bootstrap_address("10.0.0.5:6379") == "10.0.0.5:6379"
    assert _bootstrap_address("auto") == "127.0.0.1:1"
    assert _bootstrap_address("local") is None

"""Which files a protocol command reads and writes, so a worker on another node can run it
with no shared disk: the caller sends `input_files(command)` along, the host writes them
under a folder of its own, runs the command with its paths mapped there (`rewrite`), and sends back
what it wrote into the command's `output_dirs`. Pure functions of the command: both sides
of a Ray call (`ray_workers.py`, `ray_host.py`) use them, and neither imports the other."""
from __future__ import annotations

from pathlib import Path
from typing import Any

INPUT_FILES = ("path", "score_path", "rows_path")  # command keys naming a driver-side file the worker reads
INPUT_LISTS = ("fold_files",)  # ... a list of such files, each with the folder it lies in (a kept fold model's
# folder: what the model reads beside it, a screened model's columns, travels with it)
INPUT_DIRS = ("model_dir",)  # ... a directory whose files it reads
OUTPUT_DIRS = ("directory", "save_dir")  # ... a directory it writes into (a job's save_dir too)


def rewrite(value: Any, paths: dict[str, str]) -> Any:
    """`value` with every string that is, or lies under, a key of `paths` mapped to its value
    (the longest key that matches)."""
    if isinstance(value, dict):
        return {k: rewrite(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, paths) for v in value]
    if isinstance(value, str):
        for old in sorted(paths, key=len, reverse=True):
            root = old.rstrip("/")
            if value == old or value == root or value.startswith(root + "/"):
                return paths[old].rstrip("/") + value[len(root):]
    return value


def _jobs(command: dict[str, Any]) -> list[dict[str, Any]]:
    return [command, *(j for j in command.get("jobs") or [] if isinstance(j, dict))]


def output_dirs(command: dict[str, Any]) -> list[str]:
    return [part[key] for part in _jobs(command) for key in OUTPUT_DIRS if part.get(key)]


def input_files(command: dict[str, Any]) -> dict[str, bytes | dict[str, bytes]]:
    """What travels with a command: each driver-side file it reads (path -> bytes), and each
    directory it reads (path -> {relative path: bytes}, its layout kept)."""
    found: dict[str, bytes | dict[str, bytes]] = {}
    for part in _jobs(command):
        for path in [part[key] for key in INPUT_FILES if part.get(key)]:
            found[str(path)] = Path(path).read_bytes()
        for directory in [part[key] for key in INPUT_DIRS if part.get(key)] + \
                [str(Path(p).parent) for key in INPUT_LISTS for p in part.get(key) or []]:
            root = Path(directory)
            found[str(directory)] = {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}
    return found

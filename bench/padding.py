"""How much of a fused batch is padding: hidden units and multiply-adds of the stacked batches
against those of the models themselves, for the bench's configs, by batch plan. No training.

    python bench/padding.py --configs 20 --folds 5 --seeds 0,1,2,3 --caps 100,32,20

A stacked layer is as wide as its batch's widest model, and with `pad_depths` a batch is as
deep as its deepest; the cost shows in every [M, N, H] pass and matmul of every epoch."""
from __future__ import annotations

import argparse
import json

from trialfuse.bench import MODES, sample_configs
from trialfuse.engine.families import mlp
from trialfuse.engine.fused.batching import depth_group, plan_batches
from trialfuse.engine.fused.mlp import stack_widths
from trialfuse.engine.fused.train import Job
from trialfuse.survivors import make_survivors

PLANS = ("fused", "fused-snug", "fused-padded")


def multiply_adds(n_features: int, widths: list[int]) -> int:
    return sum(a * b for a, b in zip([n_features, *widths], [*widths, 1], strict=True))


def measure(configs: int, folds: int, seed: int, cap: int, plan: str, n_features: int) -> dict:
    params = [mlp.with_defaults(c) for c in sample_configs(configs, 100, seed=seed)]
    jobs = [Job(p, k, 0, key=i * folds + k) for i, p in enumerate(params) for k in range(folds)]
    batching = MODES[plan].batching
    groups: dict[int, list[Job]] = {}
    for job in jobs:  # as run_jobs groups them (one fold size here)
        groups.setdefault(depth_group(job, batching), []).append(job)
    units = macs = 0
    sizes = []
    for group in groups.values():
        for batch in plan_batches(group, 1, cap, batching):
            widths = stack_widths([job.params["hidden_layers"] for job in batch])
            units += len(batch) * sum(widths)
            macs += len(batch) * multiply_adds(n_features, widths)
            sizes.append(len(batch))
    own_units = sum(sum(job.params["hidden_layers"]) for job in jobs)
    own_macs = sum(multiply_adds(n_features, job.params["hidden_layers"]) for job in jobs)
    return {"seed": seed, "cap": cap, "plan": plan, "batches": sizes,
            "units_x": round(units / own_units, 2), "multiply_adds_x": round(macs / own_macs, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--caps", default="100,32,20", help="models a batch may hold (memory's limit)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n_features = make_survivors(50, seed=0)[0].shape[1]  # the reference table's encoded width
    rows = [measure(args.configs, args.folds, int(seed), int(cap), plan, n_features)
            for cap in args.caps.split(",") for plan in PLANS for seed in args.seeds.split(",")]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'cap':>4} {'plan':<13}{'seed':>5}{'units x':>9}{'mult-adds x':>13}  batches")
    for r in rows:
        print(f"{r['cap']:>4} {r['plan']:<13}{r['seed']:>5}{r['units_x']:>9.2f}{r['multiply_adds_x']:>13.2f}"
              f"  {r['batches']}")


if __name__ == "__main__":
    main()

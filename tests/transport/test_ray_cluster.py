"""A run on a simulated three-node Ray cluster that loses a node in the middle: it completes
with exactly the trials asked for, none lost or told twice, and the timeline says which node
ran what. (`ray.cluster_utils.Cluster` runs the nodes as processes of this machine.)"""
from __future__ import annotations

import json
import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from trialfuse.driver.options import RunOptions
from trialfuse.driver.run import SilentReporter, compare_models
from trialfuse.survivors import TARGET, write_survivors

pytestmark = pytest.mark.slow  # a Ray instance: `pytest -m "not slow"` leaves it out


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False,
                                      "object_store_memory": 100 * 2**20})
    nodes = [cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=100 * 2**20) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()


class LoseABusyGPUNode(SilentReporter):
    """Removes a GPU node in the middle of an NN task it is training (watching the pool's
    activity, as the progress display does), and notes when."""

    def __init__(self, cluster: Cluster, nodes):
        self.cluster, self.nodes = cluster, nodes
        self.lost, self.removed_at = None, None

    def watch(self, activity) -> None:
        threading.Thread(target=self._remove_when_busy, args=(activity,), daemon=True).start()

    def _remove_when_busy(self, activity) -> None:
        deadline = time.monotonic() + 120
        while self.lost is None and time.monotonic() < deadline:
            for node in self.nodes:
                if any(node.node_id[:8] in label and what.startswith("nn") for label, what in activity()):
                    time.sleep(0.2)  # into its training
                    self.removed_at = time.time()
                    self.cluster.remove_node(node)
                    self.lost = node
                    return
            time.sleep(0.02)


def test_a_node_lost_mid_run_lowers_capacity_and_every_trial_is_still_told_once(cluster, tmp_path):
    cluster, nodes = cluster
    data = write_survivors(tmp_path / "rows.csv", rows=600, seed=0)
    opts = RunOptions(data=data, target=TARGET, models=["lightgbm", "nn"], trials=6, folds=3, out=tmp_path / "run",
                      explain=False, prune=False, ray="auto")
    everyone = {n.node_id[:8] for n in cluster.list_all_nodes()}
    reporter = LoseABusyGPUNode(cluster, nodes)
    results = compare_models(opts, reporter).to_json()
    assert reporter.lost is not None
    assert results["device"] == "ray: 3 nodes, 2 gpu + 1 cpu"
    for family in ("lightgbm", "nn"):
        counts = results["families"][family]
        assert (counts["trials_complete"], counts["trials_pruned"], counts["trials_failed"]) == (6, 0, 0), counts
    tasks = json.loads((tmp_path / "run" / "timeline.json").read_text())["tasks"]
    lost = reporter.lost.node_id[:8]
    assert {t["device"].split(" on node ")[1] for t in tasks} <= everyone
    assert not [t for t in tasks if t["device"].endswith(lost) and t["start"] > reporter.removed_at]  # none there after
    assert any(t["what"] in ("save", "retrain") for t in tasks)  # the winner was saved, by a worker still there

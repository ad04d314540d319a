"""A run on a simulated three-node Ray cluster that loses a node in the middle: it completes
with exactly the trials asked for, none lost or told twice, and the timeline says which node
ran what. (`ray.cluster_utils.Cluster` runs the nodes as processes of this machine.)"""
from __future__ import annotations

import json

import pytest
import ray
from ray.cluster_utils import Cluster

from trialfuse.driver.options import RunOptions
from trialfuse.driver.run import SilentReporter, compare_models
from trialfuse.survivors import TARGET, write_survivors


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


class LoseANodeAfterTheFirstNNTrial(SilentReporter):
    def __init__(self, cluster: Cluster, node):
        self.cluster, self.node, self.removed = cluster, node, False

    def trial_finished(self, result) -> None:
        if result.family == "nn" and not self.removed:
            self.removed = True
            self.cluster.remove_node(self.node)


def test_a_node_lost_mid_run_lowers_capacity_and_every_trial_is_still_told_once(cluster, tmp_path):
    cluster, nodes = cluster
    lost = nodes[0].node_id
    data = write_survivors(tmp_path / "rows.csv", rows=600, seed=0)
    opts = RunOptions(data=data, target=TARGET, models=["lightgbm", "nn"], trials=6, folds=3, out=tmp_path / "run",
                      explain=False, prune=False, ray="auto")
    reporter = LoseANodeAfterTheFirstNNTrial(cluster, nodes[0])
    results = compare_models(opts, reporter)
    assert reporter.removed
    assert results["device"] == "ray: 3 nodes, 2 gpu + 1 cpu"
    for family in ("lightgbm", "nn"):
        counts = results["families"][family]
        assert (counts["trials_complete"], counts["trials_pruned"], counts["trials_failed"]) == (6, 0, 0), counts
    tasks = json.loads((tmp_path / "run" / "timeline.json").read_text())["tasks"]
    nodes_used = {t["device"].split(" on node ")[1] for t in tasks}
    assert lost[:8] in nodes_used and len(nodes_used) == 3  # the lost node ran NN folds before it went
    last_on_lost = max(t["end"] for t in tasks if t["device"].endswith(lost[:8]))
    assert any(t["what"] == "nn" and t["start"] > last_on_lost for t in tasks)  # the NN went on elsewhere

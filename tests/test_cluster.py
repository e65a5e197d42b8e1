"""``compare --address`` on a two-node Ray cluster on this machine (a head and a worker, 1 CPU
each, every address on 127.0.0.1): trials spread over both nodes and give the table a single
machine gives; a node lost mid-run is retried on the other node (``--max-failures``) or fails its
row alone with ``node lost``."""

import contextlib
import json

import pytest
import yaml

from recbole_kgin import cli
from recbole_kgin.experiment import search
from synthetic import tiny_config, write_kg_dataset

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # minutes: run with --run-slow (.ci/run does)
from ray.cluster_utils import Cluster  # noqa: E402


@contextlib.contextmanager
def loopback_cluster():
    """Head + one worker node, 1 CPU each, bound to 127.0.0.1 only."""
    import ray._private.ray_constants as ray_constants

    with pytest.MonkeyPatch.context() as mp:
        # Ray on Linux picks the machine's outward address for its nodes; off, it uses loopback
        # (read at import in this process, from the environment in the processes it starts)
        mp.setenv(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "0")
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        cluster = Cluster(initialize_head=True, connect=False,
                          head_node_args={"num_cpus": 1, "include_dashboard": False})
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        try:
            yield cluster, worker
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()


def listening_addresses(pids):
    """The local addresses the given processes listen on (from /proc, Linux)."""
    import os

    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                found.add(parts[1].split(":")[0])
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    data = root / "data"
    write_kg_dataset(data, n_users=40, n_items=50, per_user=6)
    config = tiny_config(data)
    for key in ("epochs", "eval_step", "train_batch_size"):
        config.pop(key)
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return root, config_file


def compare_argv(workspace, run, *extra):
    root, config_file = workspace
    return ["compare", "--dataset", "tiny", "--out", str(root / "out"), "--run", run,
            "--config_files", str(config_file), *extra]


def results(workspace, run):
    return json.loads((workspace[0] / "out" / run / "results.json").read_text())


def nodes_of(row):
    trials = [t.get("node_id") for t in (row.get("search") or {}).get("trial_log", [])]
    return trials, [s.get("node_id") for s in row.get("seed_results", [])]


def test_trials_spread_over_two_nodes_and_equal_a_single_machine(workspace):
    args = ["--models", "BPR,LightGCN", "--trials", "2", "--seeds", "2", "--epochs=2"]
    assert cli.main(compare_argv(workspace, "single", *args)) == 0
    with loopback_cluster() as (cluster, worker):
        head_id, worker_id = cluster.head_node.node_id, worker.node_id
        pids = [p.process.pid for node in (cluster.head_node, worker)
                for kind in node.all_processes.values() for p in kind]
        loopback = {"0100007F", "00000000000000000000000001000000",
                    "0000000000000000FFFF00000100007F"}
        assert listening_addresses(pids) and listening_addresses(pids) <= loopback, \
            "a Ray process listens on an address other than 127.0.0.1"
        assert cli.main(compare_argv(workspace, "two-nodes", *args, "--address",
                                     cluster.address)) == 0
    alone, spread = results(workspace, "single"), results(workspace, "two-nodes")
    used = set()
    for row in spread["models"]:
        trials, seeds = nodes_of(row)
        assert all(trials) and all(seeds)
        used |= set(trials) | set(seeds)
    assert used == {head_id, worker_id}, "both nodes ran trials"
    for a, b in zip(alone["models"], spread["models"]):
        assert a["model"] == b["model"] and a["params"] == b["params"]
        assert [t["best_valid"] for t in a["search"]["trial_log"]] == [
            t["best_valid"] for t in b["search"]["trial_log"]]
        assert [s["test_result"] for s in a["seed_results"]] == [
            s["test_result"] for s in b["seed_results"]]
    trials_md = (workspace[0] / "out" / "two-nodes" / "models" / "BPR" / "trials.md").read_text()
    assert "| node |" in trials_md
    assert head_id[:8] in trials_md or worker_id[:8] in trials_md


_KILL = {}  # the cluster and node to kill; a module global, as Ray pickles its callbacks


class _KillOnWorkerResult(__import__("ray.tune", fromlist=["Callback"]).Callback):
    """The first result reported from the worker node removes that node (its raylet and workers
    are killed), so the trial dies mid-run."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not _KILL.get("done") and result.get("node_id") == _KILL["worker"].node_id \
                and result.get("epochs_run", 0) >= _KILL.get("after", 1):
            _KILL["done"] = True
            _KILL["cluster"].remove_node(_KILL["worker"], allow_graceful=False)


class _KillWorker:
    def __init__(self, cluster, worker, after=1):
        _KILL.clear()
        _KILL.update(cluster=cluster, worker=worker, done=False, after=after)

    @property
    def done(self):
        return _KILL.get("done", False)

    def install(self, monkeypatch):
        original = search._with_progress

        def with_kill(callbacks, *args, **kwargs):
            return [*original(callbacks, *args, **kwargs), _KillOnWorkerResult()]

        monkeypatch.setattr(search, "_with_progress", with_kill)


def run_losing_the_worker(workspace, monkeypatch, run, models, trials, seeds, retries, *extra,
                          after=1):
    """``compare`` on a fresh loopback cluster whose worker node is killed mid-trial; returns
    ``(exit code, head node id)``. A tiny epoch takes about 10 ms on a fast machine: with 40 epochs
    a trial could report its last epoch before the kill had landed (then nothing was lost), so each
    run trains 400 epochs without early stopping, seconds longer than the kill takes."""
    with loopback_cluster() as (cluster, worker):
        kill = _KillWorker(cluster, worker, after)
        kill.install(monkeypatch)
        code = cli.main(compare_argv(workspace, run, "--models", models, "--trials", trials,
                                     "--seeds", seeds, "--epochs=400", "--patience", "400",
                                     "--max-failures", retries, "--address", cluster.address,
                                     *extra))
        head_id = cluster.head_node.node_id
    assert kill.done, "no trial reported from the worker node"
    return code, head_id


def test_node_lost_mid_trial_is_retried_and_counted(workspace, monkeypatch):
    code, head_id = run_losing_the_worker(workspace, monkeypatch, "retried", "BPR", "2", "1", "1")
    assert code == 0
    row = results(workspace, "retried")["models"][0]
    assert row["status"] == "ok"
    log = row["search"]["trial_log"]
    assert sum(t["failures"] for t in log) == 1
    assert all(t["node_id"] == head_id for t in log if t["failures"])  # the retry ran on the head
    assert row["lost_attempts"] == 1
    table = (workspace[0] / "out" / "retried" / "table.md").read_text()
    assert "lost attempts" in table


def test_a_seed_run_lost_with_its_node_is_retried_from_its_checkpoint(workspace, monkeypatch):
    """The worker node dies after a seed run there has reported 5 epochs: the retry on the head
    continues from the checkpoint that run kept in the shared run folder (trial_checkpoint_s 0:
    one after every epoch), not from its first epoch."""
    code, head_id = run_losing_the_worker(workspace, monkeypatch, "resumed", "BPR", "0", "2", "1",
                                          "--trial_checkpoint_s=0", after=5)
    assert code == 0
    row = results(workspace, "resumed")["models"][0]
    assert row["status"] == "ok" and row["lost_attempts"] == 1
    resumed = [s.get("resumed_from_epoch") for s in row["seed_results"]]
    assert sorted(resumed, key=lambda r: r or 0)[0] is None  # the seed run on the head ran whole
    assert max(r or 0 for r in resumed) >= 4, resumed  # the retried one continued


def test_node_lost_without_retries_fails_only_its_row(workspace, monkeypatch):
    code, _ = run_losing_the_worker(workspace, monkeypatch, "lost", "BPR,Pop", "0", "2", "0")
    assert code == 1  # a model failed; the rest of the table completed
    rows = {r["model"]: r for r in results(workspace, "lost")["models"]}
    assert rows["BPR"]["status"] == "failed"
    assert rows["BPR"]["error"].startswith("node lost")
    assert "\n" not in rows["BPR"]["error"]
    assert rows["Pop"]["status"] == "ok"
    table = (workspace[0] / "out" / "lost" / "table.md").read_text()
    assert "failed: node lost" in table


def test_a_folder_a_node_cannot_see_and_resources_no_node_has_are_refused(workspace, monkeypatch,
                                                                          tmp_path):
    from recbole_kgin.errors import UsageError

    with loopback_cluster() as (cluster, worker):
        ray.init(address=cluster.address)
        search.check_memory({"cpus_per_trial": 1, "gpus_per_trial": 0, "model": "BPR"})
        for cpus, gpus in ((2, 0), (1, 0.5)):  # 1 CPU and no GPU per node
            with pytest.raises(UsageError, match="which no node has"):
                search.check_memory({"cpus_per_trial": cpus, "gpus_per_trial": gpus,
                                     "model": "BPR"})
        assert search.check_shared_folder(tmp_path / "shared") == 2
        # the nodes cannot find the token file (as on machines without the shared mount): the
        # driver's write goes nowhere
        monkeypatch.setattr(search.Path, "write_text", lambda self, *a, **k: 0)
        with pytest.raises(Exception, match="not visible from Ray node"):
            search.check_shared_folder(tmp_path / "shared")
        ray.shutdown()

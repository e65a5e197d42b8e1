"""Trials share one GPU: with ``--gpus-per-trial 0.5`` two trials of one ``compare`` hold half of
a GPU each and run at once. The test runs on the CPU: Ray is told there is one GPU
(``num_gpus=1``), places trials as on a GPU node, and the trials, finding no CUDA device, train on
the CPU. Concurrency is read from the trials' own reports: each reports the wall-clock time it
started (``started_at``) and the time of each report (``reported_at``, both float seconds of the
trial's own clock; Ray's ``timestamp`` is whole seconds, too coarse for trials of a few seconds); two
trials ran at once when their [start, last report] intervals overlap. Each run trains 300 epochs
without early stopping (several seconds even on a fast machine), so that the second trial's start-up
(about a second) cannot outlast the first. With ``--gpus-per-trial 1`` the same two trials
cannot overlap (the control)."""

import json

import pytest
import yaml

from recbole_kgin import cli
from synthetic import tiny_config, write_kg_dataset

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # minutes: run with --run-slow (.ci/run does)


@pytest.fixture(scope="module")
def one_declared_gpu():
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_share")
    write_kg_dataset(root / "data", n_users=40, n_items=50, per_user=6)
    config = tiny_config(root / "data")
    for key in ("epochs", "eval_step", "train_batch_size"):
        config.pop(key)
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    return root


def intervals(run_dir, phase):
    spans = []
    for result in sorted((run_dir / "models" / "BPR" / phase).glob("**/result.json")):
        reports = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        assert reports, result
        assert all(r["gpu_share"] == reports[0]["gpu_share"] for r in reports)
        spans.append((reports[0]["started_at"], reports[-1]["reported_at"],
                      reports[0]["gpu_share"]))
    return spans


def overlap(spans):
    (a0, a1, _), (b0, b1, _) = spans
    return max(a0, b0) < min(a1, b1)


def run(workspace, name, gpus):
    return cli.main(["compare", "--dataset", "tiny", "--models", "BPR", "--trials", "2",
                     "--seeds", "2", "--out", str(workspace / "out"), "--run", name,
                     "--config_files", str(workspace / "tiny.yaml"), "--epochs=300",
                     "--patience", "300", "--cpus-per-trial", "1", "--gpus-per-trial", gpus])


def test_two_trials_hold_half_a_gpu_each_and_run_at_once(one_declared_gpu, workspace):
    assert run(workspace, "half", "0.5") == 0
    for phase in ("search", "final"):
        spans = intervals(workspace / "out" / "half", phase)
        assert len(spans) == 2 and all(share == 0.5 for *_, share in spans)
        assert overlap(spans), f"the two {phase} trials did not run at once: {spans}"
    record = json.loads((workspace / "out" / "half" / "results.json").read_text())
    assert record["search"]["gpus_per_trial"] == 0.5
    assert record["models"][0]["status"] == "ok"


def test_a_whole_gpu_each_runs_them_one_after_the_other(one_declared_gpu, workspace):
    assert run(workspace, "whole", "1") == 0
    spans = intervals(workspace / "out" / "whole", "search")
    assert len(spans) == 2 and all(share == 1.0 for *_, share in spans)
    assert not overlap(spans)

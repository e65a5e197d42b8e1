"""One writer per run folder: the lock alone, a stale lock after SIGKILL, ``compare`` and ``tune``
refused on a held folder, and the settings check of ``compare`` on unfinished models."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from recbole_kgin import cli, compare
from recbole_kgin.errors import UsageError
from recbole_kgin.experiment import run_lock, search
from cli_checks import snapshot
from synthetic import tiny_config, write_kg_dataset

ROOT = Path(__file__).resolve().parents[1]

HOLD = (
    "import sys, time\n"
    "from recbole_kgin.experiment import run_lock\n"
    "lock = run_lock.acquire(sys.argv[1], 'holder-test')\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def holder():
    """``hold(folder)``: a separate process that takes the folder's lock and keeps it."""
    procs = []

    def hold(folder):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        line = proc.stdout.readline().strip()
        assert line == "held", proc.stderr.read()
        return proc

    yield hold
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_acquire_refuse_release(tmp_path):
    lock = run_lock.acquire(tmp_path, "compare")
    record = json.loads((tmp_path / run_lock.LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["command"] == "compare"
    # a second acquire (another open file, as another process would have) is refused
    with pytest.raises(run_lock.RunFolderBusy) as refused:
        run_lock.acquire(tmp_path, "tune", option="--name / --out")
    message = str(refused.value)
    assert isinstance(refused.value, UsageError) and "\n" not in message
    assert f"compare (PID {os.getpid()}" in message and str(tmp_path) in message
    assert message.endswith("or use another --name / --out")
    lock.release()
    assert not lock.held and not (tmp_path / run_lock.LOCK_NAME).exists()
    lock.release()  # twice is harmless
    with run_lock.acquire(tmp_path, "tune") as again:
        assert again.held
    assert not (tmp_path / run_lock.LOCK_NAME).exists()


def test_lock_held_by_another_process_names_its_pid(tmp_path, holder):
    proc = holder(tmp_path)
    before = snapshot(tmp_path)
    start = time.perf_counter()
    with pytest.raises(run_lock.RunFolderBusy, match=f"holder-test \\(PID {proc.pid}, since "):
        run_lock.acquire(tmp_path, "compare")
    assert time.perf_counter() - start < 2  # refused at once, not waiting for the holder
    assert snapshot(tmp_path) == before


def test_lock_of_a_killed_process_does_not_block(tmp_path, holder):
    proc = holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = json.loads((tmp_path / run_lock.LOCK_NAME).read_text())
    assert left["pid"] == proc.pid  # the file stays behind, the lock does not
    with run_lock.acquire(tmp_path, "compare"):
        assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["pid"] == os.getpid()


def test_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(KeyError):
        with run_lock.acquire(tmp_path, "compare"):
            raise KeyError("boom")
    run_lock.acquire(tmp_path, "compare").release()


# ---------------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_lock")
    write_kg_dataset(root / "data")
    config = tiny_config(root / "data")
    for key in ("epochs", "eval_step", "train_batch_size"):  # compare's budget sets them
        config.pop(key)
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return root, config_file


def _compare_argv(workspace, out, *extra, epochs=2):
    _, config_file = workspace
    return ["--dataset", "tiny", "--models", "BPR,Pop", "--out", str(out), "--run", "r",
            "--config_files", str(config_file), f"--epochs={epochs}", *extra]


def test_second_compare_on_a_held_folder_is_refused_and_writes_nothing(workspace, tmp_path,
                                                                       holder, capsys):
    run_dir = tmp_path / "out" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text("{}\n")  # what the first command has written so far
    proc = holder(run_dir)
    before = snapshot(tmp_path)
    assert cli.main(["compare", *_compare_argv(workspace, tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run folder ")
    assert f"(PID {proc.pid}" in err[0] and str(run_dir) in err[0]
    assert snapshot(tmp_path) == before
    assert proc.poll() is None  # the holder is untouched


def test_second_tune_on_a_held_folder_is_refused_and_writes_nothing(workspace, tmp_path, holder,
                                                                    capsys):
    _, config_file = workspace
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {choice: [0.001, 0.01]}\n")
    exp_dir = tmp_path / "out" / "search"
    exp_dir.mkdir(parents=True)
    proc = holder(exp_dir)
    before = snapshot(tmp_path)
    argv = ["tune", "--model", "BPR", "--dataset", "tiny", "--space", str(space),
            "--config_files", str(config_file), "--out", str(tmp_path / "out"), "--name",
            "search", "--epochs=1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"(PID {proc.pid}" in err[0] and "another --name / --out" in err[0]
    assert snapshot(tmp_path) == before


def test_unfinished_model_with_other_settings_is_refused(workspace, tmp_path, monkeypatch,
                                                         capsys):
    """A compare killed in the middle of BPR left its settings; another command with other
    settings on that folder would continue BPR's search and seed runs: it is refused."""
    out = tmp_path / "out"
    monkeypatch.setattr(search, "start_ray", lambda address=None: False)
    monkeypatch.setattr(search, "stop_ray", lambda started: None)
    seen = []

    def killed(name, *args, **kwargs):
        started = out / "r" / "models" / name / compare.STARTED
        seen.append((name, json.loads(started.read_text())))
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_model", killed)
    with pytest.raises(KeyboardInterrupt):
        compare.main(_compare_argv(workspace, out))
    run_dir = out / "r"
    assert [name for name, _ in seen] == ["BPR"]
    assert seen[0][1]["budget"]["epochs"] == 2  # recorded before BPR started
    assert not (run_dir / run_lock.LOCK_NAME).exists()  # released on the way out
    capsys.readouterr()

    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="holds an unfinished BPR started with other settings"):
        compare.main(_compare_argv(workspace, out, epochs=3))
    assert cli.main(["compare", *_compare_argv(workspace, out, "--learning_rate=0.5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unfinished BPR" in err[0] and "learning_rate" in err[0]
    assert snapshot(tmp_path) == before
    # the same settings continue it; --force starts it again
    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        compare.main(_compare_argv(workspace, out))
    with pytest.raises(KeyboardInterrupt):
        compare.main(_compare_argv(workspace, out, "--force", epochs=3))
    assert [s["budget"]["epochs"] for _, s in seen] == [2, 3]


def test_settings_of_an_older_unfinished_model_come_from_results_json(tmp_path):
    run_dir = tmp_path / "r"
    (run_dir / "models" / "BPR" / "search").mkdir(parents=True)  # no settings.json in it
    then = {"dataset": "tiny", "config_files": [], "overrides": {}, "budget": {"epochs": 2}}
    (run_dir / "results.json").write_text(json.dumps({"settings": then}))
    now = {**then, "budget": {"epochs": 3}}
    with pytest.raises(UsageError, match="unfinished BPR started with other settings"):
        compare.check_previous(run_dir, ["BPR", "Pop"], now, force=False)
    compare.check_previous(run_dir, ["BPR", "Pop"], then, force=False)
    compare.check_previous(run_dir, ["BPR"], now, force=True)
    (run_dir / "models" / "BPR.json").write_text(json.dumps({"status": "ok", "settings": then}))
    with pytest.raises(UsageError, match="holds a finished BPR made with other settings"):
        compare.check_previous(run_dir, ["BPR"], now, force=False)
    # a failed model starts again from scratch: nothing of it is kept, nothing to refuse
    (run_dir / "models" / "BPR.json").write_text(json.dumps({"status": "failed",
                                                             "settings": then}))
    compare.check_previous(run_dir, ["BPR"], now, force=False)

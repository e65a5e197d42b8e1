"""Preflight: options, output paths, the Ray address, resources, search-space values and the RecBole
keys we pass through are refused with one line, a non-zero exit and nothing written, before Ray
starts or any data is read."""

import os
import socket

import pytest

from recbole_kgin.cli import main
from recbole_kgin.errors import UsageError
from recbole_kgin.experiment import preflight
from cli_checks import LOAD_COL, expect_error, snapshot
from synthetic import write_kg_dataset


@pytest.fixture
def work(tmp_path, monkeypatch):
    write_kg_dataset(tmp_path, n_users=20, n_items=30, per_user=6)
    (tmp_path / "a_file").write_text("x")
    monkeypatch.chdir(tmp_path)
    # never wait long for an address in these tests; the machine is CPU-only for Ray here
    monkeypatch.setattr(preflight, "ADDRESS_TIMEOUT_S", 2.0)
    monkeypatch.setattr(preflight, "local_resources",
                        lambda: {"CPU": 2.0, "GPU": 0.0, "memory": 8.0 * 2**30})
    return tmp_path


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]       # nothing listens there once the socket is closed


def compare_args(root, *extra):
    return ["compare", "--dataset", "tiny", "--models", "Pop", "--out", str(root / "results"),
            f"--data_path={root}", LOAD_COL, *extra]


def tune_args(root, *extra):
    return ["tune", "--model", "Pop", "--dataset", "tiny", "--out", str(root / "ray"),
            f"--data_path={root}", LOAD_COL, *extra]


COMPARE_CASES = [
    ("cpus-0", ["--cpus-per-trial", "0"], "--cpus-per-trial 0: expected a number > 0"),
    ("cpus-nan", ["--cpus-per-trial", "nan"], "--cpus-per-trial nan"),
    ("gpus-negative", ["--gpus-per-trial", "-1"], "--gpus-per-trial -1"),
    ("gpus-1.5", ["--gpus-per-trial", "1.5"], "a fraction must be below 1"),
    ("gpus-on-cpu-machine", ["--gpus-per-trial", "1"], "1 GPU, which no node has"),
    ("cpus-beyond-machine", ["--cpus-per-trial", "64"], "64 CPU, which no node has"),
    ("max-failures-negative", ["--max-failures", "-5"], "--max-failures -5"),
    ("trials-negative", ["--trials", "-1"], "--trials must be an integer >= 0"),
    ("seeds-0", ["--seeds", "0"], "--seeds must be an integer >= 1"),
    ("patience-0", ["--patience", "0"], "--patience must be an integer >= 1"),
    ("verbose-9", ["--verbose", "9"], "--verbose 9"),
    ("address-bad-format", ["--address", "nohost"], "expected auto or HOST:PORT"),
    ("out-is-a-file", ["--out", "a_file"], "is a file, not a directory"),
    ("out-name-too-long", ["--run", "r" * 300], "longer than"),
    ("checkpoint-dir-is-a-file", ["--checkpoint_dir=a_file/x"], "--checkpoint_dir a_file/x"),
]


@pytest.mark.parametrize("extra,fragment", [c[1:] for c in COMPARE_CASES],
                         ids=[c[0] for c in COMPARE_CASES])
def test_compare_preflight(work, capsys, extra, fragment):
    argv = compare_args(work, *extra)
    if extra[0] == "--out":     # the case's own --out replaces the default one
        argv = ["compare", "--dataset", "tiny", "--models", "Pop", *extra,
                f"--data_path={work}", LOAD_COL]
    expect_error(argv, fragment, work, capsys)


TUNE_CASES = [
    ("cpus-0", ["--cpus-per-trial", "0"], "--cpus-per-trial 0"),
    ("gpus-on-cpu-machine", ["--gpus-per-trial", "1"], "which no node has"),
    ("num-samples-0", ["--num-samples", "0"], "--num-samples 0"),
    ("grace-0", ["--grace-period", "0"], "--grace-period 0"),
    ("reduction-1", ["--reduction-factor", "1"], "--reduction-factor 1"),
]


@pytest.mark.parametrize("extra,fragment", [c[1:] for c in TUNE_CASES],
                         ids=[c[0] for c in TUNE_CASES])
def test_tune_preflight(work, capsys, extra, fragment):
    expect_error(tune_args(work, *extra), fragment, work, capsys)


@pytest.mark.parametrize("command", ["compare", "tune"])
def test_unreachable_address_fails_in_bounded_time(work, capsys, command):
    args = compare_args if command == "compare" else tune_args
    err = expect_error(args(work, "--address", f"127.0.0.1:{closed_port()}"),
                       "no Ray cluster answers there", work, capsys)
    assert "tried for 2 s" in err


def test_reachable_address_passes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        preflight.check_reachable(address, timeout=2, bootstrap=lambda a: a)
        preflight.check_reachable(address, timeout=2, bootstrap=lambda a: None)
    preflight.check_reachable("auto")
    preflight.check_reachable(None)


def test_address_that_ray_rewrites_to_a_silent_one_fails_with_one_line():
    """A head bound to 127.0.0.1 only: Ray's driver would connect to the machine's outward
    address (here 127.0.0.2, where nothing listens) and hang; the preflight says so."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with pytest.raises(preflight.UsageError) as error:
            preflight.check_reachable(f"127.0.0.1:{port}", timeout=2,
                                      bootstrap=lambda a: f"127.0.0.2:{port}")
    message = str(error.value)
    assert f"127.0.0.2:{port}" in message and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in message
    assert "\n" not in message


def test_rays_rewrite_of_a_loopback_host_is_what_the_preflight_probes(monkeypatch):
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray._private.ray_constants as ray_constants

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    assert preflight.ray_bootstrap_address("127.0.0.1:6390") == "127.0.0.1:6390"


def test_unmet_resources():
    nodes = [{"CPU": 2.0, "memory": 4 * 2**30}, {"CPU": 8.0, "GPU": 1.0, "memory": 2 * 2**30}]
    assert preflight.unmet_resources({"cpu": 8, "gpu": 0.5}, nodes) is None
    assert preflight.unmet_resources({"cpu": 1, "memory": 3 * 2**30}, nodes) is None
    why = preflight.unmet_resources({"cpu": 4, "gpu": 0, "memory": 3 * 2**30}, nodes)
    assert why is not None and "nodes: 2 CPU, 0 GPU, 4.0 GiB; 8 CPU, 1 GPU, 2.0 GiB" in why
    assert "2 GPU" in preflight.unmet_resources({"cpu": 1, "gpu": 2}, nodes)
    assert "no live node" in preflight.unmet_resources({"cpu": 1}, [])


def test_output_dir_rules(tmp_path, monkeypatch):
    preflight.check_output_dir(tmp_path / "new" / "deeper", "--out")      # creatable
    preflight.check_output_dir(tmp_path, "--out")                         # exists
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        preflight.check_output_dir(tmp_path / "f" / "x", "--out")
    with pytest.raises(UsageError, match="longer than"):
        preflight.check_output_dir(tmp_path / ("n" * 300), "--out")
    # a location the user cannot write to (tested through os.access: root may write anywhere)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UsageError, match="not writable"):
        preflight.check_output_dir(tmp_path / "new", "--out")
    with pytest.raises(UsageError, match="the directory is not writable"):
        preflight.check_output_dir(tmp_path, "--out")


def test_bad_search_space_values_refused_before_ray(work, capsys):
    space = work / "space.yaml"
    space.write_text("embedding_size: {choice: [0, -8]}\n")
    expect_error(["tune", "--model", "BPR", "--dataset", "tiny", "--space", str(space),
                  "--out", str(work / "ray"), f"--data_path={work}", LOAD_COL],
                 "key 'embedding_size': choice value 0 is not an integer >= 1", work, capsys)
    space.write_text("k: {randint: [0, 50]}\n")
    expect_error(["tune", "--model", "ItemKNN", "--dataset", "tiny", "--space", str(space),
                  "--out", str(work / "ray"), f"--data_path={work}", LOAD_COL],
                 "randint [0, 50] gives integers in that range; 0 is not an integer >= 1",
                 work, capsys)


def data_args(root):
    return ["--model=BPR", "--dataset=tiny", f"--data_path={root}",
            f"--checkpoint_dir={root / 'saved'}", "--show_progress=False", "--state=WARNING",
            LOAD_COL]


PASSED_THROUGH = [
    ("device", ["--device=cuda:7"], "config key 'device' (from --device) cannot be set"),
    ("gpu-id-abc", ["--gpu_id=abc"], "config key 'gpu_id' = 'abc'"),
    ("state", ["--state=LOUD"], "config key 'state' = 'LOUD'"),
    ("split-mode", ["--eval_args={'split': {'XS': [0.8, 0.1, 0.1]}}"],
     "split {'RS': [train, valid, test]}"),
    ("eval-order", ["--eval_args={'order': 'XO'}"], "order RO or TO"),
    ("eval-mode", ["--eval_args={'mode': 'most'}"], "mode full, labeled, uniN or popN"),
    ("eval-key", ["--eval_args={'splt': 1}"], "a mapping with keys among"),
    ("neg-distribution", ["--train_neg_sample_args={'distribution': 'zipf'}"],
     "distribution uniform or popularity"),
    ("neg-sample-num", ["--train_neg_sample_args={'sample_num': 0}"], "sample_num an integer"),
    ("load-col", ["--load_col=[user_id]"], "config key 'load_col'"),
]


@pytest.mark.parametrize("extra,fragment", [c[1:] for c in PASSED_THROUGH],
                         ids=[c[0] for c in PASSED_THROUGH])
def test_passed_through_recbole_keys(work, capsys, extra, fragment):
    flag = extra[0].split("=", 1)[0]
    argv = [a for a in data_args(work) if a.split("=", 1)[0] != flag]
    expect_error([*argv, *extra], fragment, work, capsys)


def test_gpu_id_without_a_cuda_device(work, capsys):
    import torch

    if torch.cuda.is_available():
        argv = [*data_args(work), f"--gpu_id={torch.cuda.device_count() + 7}"]
    else:
        argv = [*data_args(work), "--gpu_id=0"]
    expect_error(argv, "no CUDA device with that id is available here", work, capsys)


def test_write_errors_become_one_line_and_keep_the_previous_file(tmp_path, monkeypatch):
    from recbole_kgin import checkpoint as ckpt
    from recbole_kgin.errors import OutputError

    target = tmp_path / "model.pth"
    ckpt.atomic_write(target, lambda f: f.write(b"good"))

    def disk_full(handle):
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"cannot write .*model.pth: No space left on device"):
        ckpt.atomic_write(target, disk_full)
    assert target.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]   # no temporary file
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError, match="a_file/model.pth"):
        ckpt.atomic_write(tmp_path / "a_file" / "model.pth", lambda f: f.write(b"x"))


def test_train_with_checkpoint_dir_under_a_file(work, capsys):
    argv = ["--model=Pop", "--dataset=tiny", f"--data_path={work}",
            f"--checkpoint_dir={work / 'a_file' / 'saved'}", "--show_progress=False",
            "--state=WARNING", "--epochs=1", LOAD_COL]
    before = snapshot(work)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err and "Traceback" not in err, err
    assert "a_file" in err
    assert {k: v for k, v in snapshot(work).items() if not k.startswith("log")} == {
        k: v for k, v in before.items() if not k.startswith("log")}


def test_truncated_xz_source_is_one_line(tmp_path, capsys):
    import lzma

    src = tmp_path / "src"
    src.mkdir()
    data = lzma.compress(b"".join(f"{u} {u % 5} {(u + 1) % 5}\n".encode() for u in range(200)))
    (src / "test.txt.xz").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code = main(["convert", "--src", str(src), "--name", "ds", "--out", str(out), "--no-kg",
                 "--resplit", "0.8,0.1,0.1"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err and "truncated .xz file" in err, err
    assert not out.exists() or list(out.iterdir()) == []


def test_model_value_rules_apply_to_the_configuration(work, capsys):
    argv = [a.replace("--model=BPR", "--model=ItemKNN") for a in data_args(work)]
    expect_error([*argv, "--k=0"], "config key 'k' = 0 (from --k): expected an integer >= 1",
                 work, capsys)

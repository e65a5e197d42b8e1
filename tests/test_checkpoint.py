"""Safe checkpoints: weights_only loading, atomic writes, exact resume after SIGKILL, determinism."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recbole_kgin import checkpoint as ckpt
from recbole_kgin.cli import main
from cli_checks import LOAD_COL
from synthetic import write_kg_dataset

ROOT = Path(__file__).resolve().parents[1]


def tiny_args(root, epochs=4, checkpoint_dir=None, **extra):
    args = ["--model=KGIN", "--dataset=tiny", f"--data_path={root}",
            f"--checkpoint_dir={checkpoint_dir or root / 'saved'}", f"--epochs={epochs}",
            "--eval_step=1",
            "--stopping_step=50", "--train_batch_size=64", "--eval_batch_size=4096",
            "--use_gpu=False", "--show_progress=False", "--state=WARNING", "--embedding_size=16",
            "--context_hops=2", LOAD_COL]
    return args + [f"--{k}={v}" for k, v in extra.items()]


def run_cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(ROOT / "run_recbole_kgin.py"), *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def tiny(tmp_path):
    write_kg_dataset(tmp_path, n_users=40, n_items=50, per_user=8)
    return tmp_path


def test_checkpoint_loads_with_weights_only_and_holds_plain_data(tiny, capsys):
    result_file = tiny / "out" / "result.json"
    assert main(tiny_args(tiny, epochs=2) + [f"--result_file={result_file}"]) == 0
    result = json.loads(result_file.read_text())
    assert result["epochs_run"] == 2 and result["best_epoch"] in (1, 2)
    assert set(result) >= {"best_valid_result", "test_result", "checkpoint"}
    umask = os.umask(0)
    os.umask(umask)
    assert result_file.stat().st_mode & 0o777 == 0o666 & ~umask  # not a temporary file's 0600
    assert Path(result["checkpoint"]).stat().st_mode & 0o777 == 0o666 & ~umask
    data = torch.load(result["checkpoint"], weights_only=True)
    assert data["format"] == ckpt.FORMAT and data["model"] == "KGIN"
    assert data["training"]["finished"] and data["training"]["epoch"] == 1
    assert data["id_mappings"]["item"][0] == "[PAD]" and "i0" in data["id_mappings"]["item"]
    assert len(data["dataset_fingerprint"]) == 64
    assert data["config"]["model"] == "KGIN" and data["config"]["epochs"] == 2
    # no temporary file left next to it
    assert [p.name for p in Path(result["checkpoint"]).parent.iterdir()] == [
        Path(result["checkpoint"]).name]


def test_saved_false_writes_no_checkpoint(tiny, capsys):
    for value in ("0", "False", "no"):
        assert main(tiny_args(tiny, epochs=1, checkpoint_dir=tiny / f"c{value}")
                    + [f"--saved={value}"]) == 0
        assert not list((tiny / f"c{value}").glob("*.pth"))
        assert "checkpoint:" not in capsys.readouterr().out


def test_same_seed_twice_gives_same_metrics(tiny):
    results = []
    for run in range(2):
        out = tiny / f"r{run}.json"
        assert main(tiny_args(tiny, epochs=2) + [f"--result_file={out}"]) == 0
        results.append(json.loads(out.read_text()))
    assert results[0]["test_result"] == results[1]["test_result"]
    assert results[0]["best_valid_result"] == results[1]["best_valid_result"]


def _checkpoint_epoch(path):
    try:
        return torch.load(path, weights_only=True)["training"]["epoch"]
    except Exception:  # noqa: BLE001 - not written yet
        return -1


def test_resume_after_sigkill_gives_the_uninterrupted_metrics(tiny):
    epochs = 6
    full = tiny / "full.json"
    proc = run_cli(tiny_args(tiny, epochs=epochs, checkpoint_dir=tiny / "full_ckpt")
                   + [f"--result_file={full}"], cwd=tiny)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    expected = json.loads(full.read_text())

    kill_dir = tiny / "killed"
    proc = run_cli(tiny_args(tiny, epochs=epochs, checkpoint_dir=kill_dir), cwd=tiny)
    deadline = time.time() + 300
    checkpoint = None
    while time.time() < deadline and proc.poll() is None:
        files = list(kill_dir.glob("KGIN-*.pth")) if kill_dir.is_dir() else []
        if files and _checkpoint_epoch(files[0]) >= 1:  # at least 2 epochs done
            checkpoint = files[0]
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = _checkpoint_epoch(checkpoint)
    assert 1 <= killed_at < epochs - 1

    resumed = tiny / "resumed.json"
    proc = run_cli([f"--resume={checkpoint}", f"--result_file={resumed}"], cwd=tiny)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    got = json.loads(resumed.read_text())
    assert got["test_result"] == expected["test_result"]
    assert got["best_valid_result"] == expected["best_valid_result"]
    assert got["best_epoch"] == expected["best_epoch"] and got["epochs_run"] == epochs
    assert got["checkpoint"] == str(checkpoint)


def test_resume_of_a_finished_run_trains_nothing_more(tiny):
    first = tiny / "a.json"
    assert main(tiny_args(tiny, epochs=2) + [f"--result_file={first}"]) == 0
    done = json.loads(first.read_text())
    second = tiny / "b.json"
    assert main([f"--resume={done['checkpoint']}", f"--result_file={second}"]) == 0
    again = json.loads(second.read_text())
    assert again["test_result"] == done["test_result"] and again["epochs_run"] == 2


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "c.pth"
    ckpt.save({"format": ckpt.FORMAT, "x": torch.ones(2)}, target)

    class Boom(Exception):
        pass

    def failing(handle):
        handle.write(b"partial")
        raise Boom()

    with pytest.raises(Boom):
        ckpt.atomic_write(target, failing)
    assert torch.load(target, weights_only=True)["x"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]
    # what a SIGKILL during a write leaves is removed by the next write
    (tmp_path / ".c.pth.tmp-killed").write_bytes(b"partial")
    ckpt.save({"format": ckpt.FORMAT, "x": torch.zeros(2)}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    a = (torch.rand(3), __import__("numpy").random.rand(3).tolist(),
         __import__("random").random())
    ckpt.set_rng_state(state)
    b = (torch.rand(3), __import__("numpy").random.rand(3).tolist(),
         __import__("random").random())
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]


def test_nan_loss_stops_naming_epoch_and_step(tiny, capsys):
    # importing RecBole's sequential models (its SINE module) turns autograd's anomaly detection on
    # for the whole process; it would raise inside backward before the loss check sees the NaN
    previous = torch.is_anomaly_enabled()
    torch.autograd.set_detect_anomaly(False)
    try:
        code = main(tiny_args(tiny, epochs=2, learning_rate=1e30, reg_weight=1e30))
    finally:
        torch.autograd.set_detect_anomaly(previous)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "training loss is" in err and "at epoch 1, step" in err and "\n" not in err


def test_trusted_recbole_pickle_loads_only_with_the_flag(tiny, capsys):
    legacy = tiny / "legacy.pth"
    from recbole_kgin.quick_start import create_config

    config = create_config("KGIN", "tiny", None, {"data_path": str(tiny), "epochs": 1})
    torch.save({"config": config, "epoch": 0, "cur_step": 0, "best_valid_score": 0.1,
                "state_dict": {"w": torch.zeros(1)}, "other_parameter": None,
                "optimizer": {}}, legacy)
    with pytest.raises(ckpt.CheckpointError, match="--trust_checkpoint"):
        ckpt.load(legacy)
    data = ckpt.load(legacy, trust=True)
    assert data["model"] == "KGIN" and data["training"] is None and data["dataset"] == "tiny"
    assert main([f"--resume={legacy}", "--trust_checkpoint"]) == 2
    assert "no training state" in capsys.readouterr().err


def test_training_loop_equals_recboles_own(tmp_path):
    """The loop that checkpoints every epoch trains exactly like RecBole's ``Trainer.fit``."""
    from recbole_kgin import quick_start
    from recbole_kgin.trainer import KGINTrainer
    from synthetic import tiny_config

    write_kg_dataset(tmp_path, n_users=40, n_items=50, per_user=8)
    histories, tests = [], []
    for ours in (True, False):
        config = quick_start.create_config("KGIN", "tiny", config_dict=tiny_config(
            tmp_path, epochs=3, embedding_size=16, train_batch_size=64,
            checkpoint_dir=str(tmp_path / f"saved_{ours}")))
        _, train_data, valid_data, test_data = quick_start.load_data(config)
        model = quick_start.build_model(config, train_data)
        if ours:
            trainer = quick_start.build_trainer(config, model)
            trainer.fit(train_data, valid_data, saved=True)
            history = [s for _, s, _ in trainer.valid_history]
        else:
            history = []
            trainer = KGINTrainer(config, model)  # RecBole's Trainer.fit, no checkpoints
            trainer.fit(train_data, valid_data, saved=False,
                        callback_fn=lambda epoch, score: history.append(float(score)))
        histories.append(history)
        tests.append(dict(trainer.evaluate(test_data, load_best_model=False)))
    assert len(histories[0]) == 3 and histories[0] == histories[1]
    assert tests[0] == tests[1]


def test_closed_form_models_other_parameters_survive_a_weights_only_round_trip(tmp_path):
    """ItemKNN / EASE keep SciPy sparse matrices and NumPy arrays outside their state dict."""
    import numpy as np
    import scipy.sparse as sp
    import torch

    from recbole_kgin import checkpoint as ckpt

    dense = np.arange(12, dtype=np.float64).reshape(3, 4)
    params = {"w": sp.csr_matrix(dense), "item_similarity": dense.astype(np.float32),
              "interaction_matrix": sp.dok_matrix(dense).tocsc(), "k": 5, "note": None}
    path = tmp_path / "other.pt"
    torch.save({"other_parameter": ckpt.pack_other(params)}, path)
    back = ckpt.unpack_other(torch.load(path, weights_only=True)["other_parameter"])
    assert back["w"].format == "csr" and (back["w"].toarray() == dense).all()
    assert back["interaction_matrix"].format == "csc"
    assert (back["interaction_matrix"].toarray() == dense).all()
    assert back["item_similarity"].dtype == np.float32 and (back["item_similarity"] == dense).all()
    assert back["k"] == 5 and back["note"] is None
    assert ckpt.unpack_other({"raw": [1, 2]}) == {"raw": [1, 2]}  # a RecBole pickle's values pass


# ---------------------------------------------------------------------------------- content digest
@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A finished 2-epoch tiny KGIN run: ``(data root, checkpoint path)``."""
    root = tmp_path_factory.mktemp("digest_run")
    write_kg_dataset(root, n_users=40, n_items=50, per_user=8)
    out = root / "result.json"
    assert main(tiny_args(root, epochs=2) + [f"--result_file={out}"]) == 0
    return root, Path(json.loads(out.read_text())["checkpoint"])


def _snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(root).rglob("*")}


def _member_ranges(path):
    """``{zip member name: (first byte, end)}`` of the stored (uncompressed) members of a file."""
    import struct
    import zipfile

    ranges = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            handle.seek(info.header_offset)
            header = struct.unpack("<4s5H3L2H", handle.read(30))
            start = info.header_offset + 30 + header[9] + header[10]
            ranges[info.filename] = (start, start + info.file_size)
    return ranges


def _flip_tensor_on_disk(path, tensor, count=64):
    """Invert ``count`` bytes in the middle of the zip member that holds ``tensor``'s bytes, in
    place in the file (torch's zip CRC is left as it was: torch does not check it)."""
    wanted = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    assert len(wanted) > count
    raw = bytearray(path.read_bytes())
    for name, (start, end) in _member_ranges(path).items():
        if "/data/" in name and raw[start:end] == wanted:
            middle = start + (end - start - count) // 2
            for i in range(middle, middle + count):
                raw[i] ^= 0xFF
            path.write_bytes(bytes(raw))
            return name
    raise AssertionError("no zip member holds the tensor's bytes")


def _copy(checkpoint, folder, name="c.pth"):
    target = folder / name
    target.write_bytes(checkpoint.read_bytes())
    return target


def _expect_refused(argv, path, root, capsys):
    before = _snapshot(root)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "is damaged" in err, err
    assert _snapshot(root) == before, "the refused command wrote something"


def test_good_checkpoint_round_trips_with_its_digest(sealed, tmp_path, capsys):
    root, checkpoint = sealed
    raw = torch.load(checkpoint, weights_only=True)
    assert raw["version"] == ckpt.VERSION == 2
    assert raw[ckpt.DIGEST_KEY] == ckpt.content_digest(raw) and len(raw[ckpt.DIGEST_KEY]) == 64
    capsys.readouterr()
    data = ckpt.load(checkpoint)
    assert capsys.readouterr().err == ""  # no notice for a verified checkpoint
    assert torch.equal(data["state_dict"]["user_embedding"],
                       raw["state_dict"]["user_embedding"])
    # saved again, the same content gives the same digest
    again = ckpt.save(data, tmp_path / "again.pth")
    assert torch.load(again, weights_only=True)[ckpt.DIGEST_KEY] == raw[ckpt.DIGEST_KEY]
    assert main(["recommend", "--checkpoint", str(checkpoint), "--users", "u1",
                 "--topk", "3"]) == 0


def test_digest_sees_every_part():
    base = {"format": ckpt.FORMAT, "w": torch.arange(4.0), "opt": {"state": {0: {
        "exp_avg": torch.zeros(3)}}}, "best": {"valid_score": 0.25}, "names": ["a", "b"]}
    digest = ckpt.content_digest(base)
    assert ckpt.content_digest({**base, ckpt.DIGEST_KEY: "anything"}) == digest
    assert ckpt.content_digest(dict(reversed(list(base.items())))) == digest  # order of keys
    changed = [
        {**base, "w": torch.tensor([0.0, 1.0, 2.0, 3.0000002])},
        {**base, "w": torch.arange(4.0).reshape(2, 2)},
        {**base, "w": torch.arange(4.0).double()},
        {**base, "opt": {"state": {1: {"exp_avg": torch.zeros(3)}}}},
        {**base, "best": {"valid_score": 0.25000000000000006}},
        {**base, "best": {"valid_score": "0.25"}},
        {**base, "names": ["a", "b", None]},
        {**base, "names": ["ab"]},
    ]
    assert len({ckpt.content_digest(c) for c in changed} | {digest}) == len(changed) + 1


def test_flipped_bytes_in_a_weight_tensor_are_refused(sealed, tmp_path, capsys, monkeypatch):
    root, checkpoint = sealed
    monkeypatch.chdir(tmp_path)
    bad = _copy(checkpoint, tmp_path)
    weight = torch.load(checkpoint, weights_only=True)["state_dict"]["entity_embedding"]
    _flip_tensor_on_disk(bad, weight)
    reread = torch.load(bad, weights_only=True)  # torch itself loads it without complaint
    copies = (reread["state_dict"]["entity_embedding"],  # the best weights and the last epoch's
              reread["training"]["state_dict"]["entity_embedding"])
    assert not all(torch.equal(copy, weight) for copy in copies)
    with pytest.raises(ckpt.CheckpointError, match="is damaged: its content does not match"):
        ckpt.load(bad)
    _expect_refused(["recommend", "--checkpoint", str(bad), "--users", "u1"], bad, tmp_path,
                    capsys)
    _expect_refused(["explain", "--checkpoint", str(bad), "--user", "u1"], bad, tmp_path, capsys)
    _expect_refused([f"--resume={bad}"], bad, tmp_path, capsys)
    from recbole_kgin.quick_start import load_data_and_model

    with pytest.raises(ckpt.CheckpointError, match=f"checkpoint {bad} is damaged"):
        load_data_and_model(str(bad))


def test_flipped_bytes_in_the_optimizer_state_are_refused(sealed, tmp_path, capsys,
                                                          monkeypatch):
    root, checkpoint = sealed
    monkeypatch.chdir(tmp_path)
    bad = _copy(checkpoint, tmp_path)
    state = torch.load(checkpoint, weights_only=True)["training"]["optimizer"]["state"]
    exp_avg = max((s["exp_avg"] for s in state.values()), key=lambda t: t.numel())
    _flip_tensor_on_disk(bad, exp_avg)
    reread = torch.load(bad, weights_only=True)["training"]["optimizer"]["state"]
    assert not all(torch.equal(s["exp_avg"], state[k]["exp_avg"]) for k, s in reread.items())
    with pytest.raises(ckpt.CheckpointError, match=f"checkpoint {bad} is damaged"):
        ckpt.load(bad)
    _expect_refused([f"--resume={bad}"], bad, tmp_path, capsys)


def test_a_flipped_bit_in_the_plain_data_is_refused(sealed, tmp_path, capsys, monkeypatch):
    import struct

    root, checkpoint = sealed
    monkeypatch.chdir(tmp_path)
    bad = _copy(checkpoint, tmp_path)
    score = torch.load(checkpoint, weights_only=True)["best"]["valid_score"]
    pickled = b"G" + struct.pack(">d", score)  # a pickled float (BINFLOAT)
    (start, end), = [r for n, r in _member_ranges(bad).items() if n.endswith("/data.pkl")]
    raw = bytearray(bad.read_bytes())
    at = raw.find(pickled, start, end)
    assert at > 0
    raw[at + 8] ^= 0x01  # the lowest bit of the mantissa
    bad.write_bytes(bytes(raw))
    reread = torch.load(bad, weights_only=True)
    assert reread["best"]["valid_score"] != score or reread["training"]["best_valid_score"] != score
    with pytest.raises(ckpt.CheckpointError, match=f"checkpoint {bad} is damaged"):
        ckpt.load(bad)
    _expect_refused(["recommend", "--checkpoint", str(bad), "--users", "u1"], bad, tmp_path,
                    capsys)


def test_old_checkpoint_without_digest_loads_with_a_notice(sealed, tmp_path, capsys):
    root, checkpoint = sealed
    data = torch.load(checkpoint, weights_only=True)
    data.pop(ckpt.DIGEST_KEY)
    old = tmp_path / "old.pth"
    torch.save({**data, "version": 1}, old)  # what version 1 of this package wrote
    capsys.readouterr()
    loaded = ckpt.load(old)
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"note: checkpoint {old} has format version 1") and "\n" not in err
    assert "cannot be verified" in err
    assert torch.equal(loaded["state_dict"]["user_embedding"],
                       data["state_dict"]["user_embedding"])
    assert main(["recommend", "--checkpoint", str(old), "--users", "u1", "--topk", "2"]) == 0
    # a current-format file whose digest is gone is damaged, not old
    stripped = tmp_path / "stripped.pth"
    torch.save(data, stripped)
    with pytest.raises(ckpt.CheckpointError, match="is damaged: format version 2 but no content"):
        ckpt.load(stripped)


def test_a_killed_writers_temporary_file_is_removed_by_the_next_save(tmp_path):
    """SIGKILL a process in the middle of a checkpoint write, then save another checkpoint into
    the same directory: the dead writer's temporary file goes, a live writer's stays."""
    code = (
        "import sys, time\n"
        "from recbole_kgin import checkpoint as ckpt\n"
        "def slow(handle):\n"
        "    handle.write(b'partial'); handle.flush()\n"
        "    print('writing', flush=True); time.sleep(60)\n"
        "ckpt.atomic_write(sys.argv[1], slow)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "KGIN-a.pth")], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    left = list(tmp_path.glob(".KGIN-a.pth.tmp-*"))
    assert len(left) == 1 and f".tmp-{proc.pid}-" in left[0].name
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    live = tmp_path / f".KGIN-c.pth.tmp-{os.getpid()}-{ckpt._host_tag()}-abcdefgh"
    live.write_bytes(b"being written")
    elsewhere = tmp_path / f".KGIN-d.pth.tmp-{proc.pid}-00000000-abcdefgh"  # another host's
    elsewhere.write_bytes(b"being written there")
    ckpt.save({"format": ckpt.FORMAT, "x": torch.ones(2)}, tmp_path / "KGIN-b.pth")
    assert not left[0].exists()
    assert live.exists() and elsewhere.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["KGIN-b.pth", live.name, elsewhere.name])


def test_digest_of_empty_and_broadcast_tensors():
    import torch

    from recbole_kgin import checkpoint as ckpt

    odd = {"empty": torch.zeros(0, 3, dtype=torch.int64).t(), "one": torch.tensor(5).expand(1),
           "none": torch.empty(0, dtype=torch.int64).expand(0)}
    plain = {k: v.clone(memory_format=torch.contiguous_format) for k, v in odd.items()}
    assert ckpt.content_digest(odd) == ckpt.content_digest(plain)
    assert ckpt.content_digest(odd) != ckpt.content_digest({**plain, "one": torch.tensor([6])})

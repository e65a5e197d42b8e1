"""Bad inputs: every case gives one line on stderr, a non-zero exit code, and writes nothing.

"Nothing written" is checked on the whole working directory of the case (data, checkpoints,
RecBole's log directories, result files): its files, sizes and modification times are the same
before and after the command.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_kgin.cli import main
from cli_checks import LOAD_COL, expect_error, snapshot
from synthetic import write_kg_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny KGIN run (2 epochs) whose checkpoint the checkpoint cases start from."""
    root = tmp_path_factory.mktemp("bad_inputs_run")
    write_kg_dataset(root, n_users=30, n_items=60, per_user=8)
    out = root / "result.json"
    assert main(["--model=KGIN", "--dataset=tiny", f"--data_path={root}",
                 f"--checkpoint_dir={root / 'saved'}", "--epochs=2", "--eval_step=1",
                 "--train_batch_size=64", "--use_gpu=False", "--show_progress=False",
                 "--state=WARNING", "--embedding_size=8", "--context_hops=1", LOAD_COL,
                 f"--result_file={out}"]) == 0
    return root, Path(json.loads(out.read_text())["checkpoint"])


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working directory holding a tiny dataset and some prepared files."""
    write_kg_dataset(tmp_path, n_users=20, n_items=30, per_user=6)
    (tmp_path / "saved").mkdir()
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "garbage.pth").write_bytes(b"\x00\x01 this is not a checkpoint" * 10)
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pth")
    (tmp_path / "bad_syntax.yaml").write_text("epochs: 3\nlearning_rate: [0.1\nseed: 1\n")
    (tmp_path / "bad_type.yaml").write_text("epochs: ten\n")
    (tmp_path / "a_list.yaml").write_text("- epochs\n- 3\n")
    (tmp_path / "typo.yaml").write_text("learnig_rate: 0.01\n")
    (tmp_path / "a_dir").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def data_args(root):
    return ["--model=KGIN", "--dataset=tiny", f"--data_path={root}",
            f"--checkpoint_dir={root / 'saved'}", "--use_gpu=False", "--show_progress=False",
            "--state=WARNING", LOAD_COL]


# (case id, extra arguments, expected fragment of the one-line error)
TRAIN_CASES = [
    ("epochs-0", ["--epochs=0"], "config key 'epochs' = 0"),
    ("epochs-abc", ["--epochs=abc"], "config key 'epochs' = 'abc'"),
    ("lr-nan", ["--learning_rate=nan"], "config key 'learning_rate' = 'nan'"),
    ("lr-inf", ["--learning_rate=inf"], "config key 'learning_rate' = 'inf'"),
    ("lr-negative", ["--learning_rate=-0.1"], "expected a finite number > 0"),
    ("misspelled-key", ["--learnig_rate=0.01"],
     "unknown config key 'learnig_rate' (from --learnig_rate): did you mean 'learning_rate'?"),
    ("unknown-model", ["--model=KGINN"], "unknown model 'KGINN'"),
    ("unknown-model-hint", ["--model=LightGCNN"], "did you mean 'LightGCN'?"),
    ("node-dropout-range", ["--node_dropout_rate=1.5"], "config key 'node_dropout_rate' = 1.5"),
    ("ind-choice", ["--ind=pearson"], "expected one of distance, cosine, mi"),
    ("batch-size-0", ["--train_batch_size=0"], "config key 'train_batch_size' = 0"),
    ("topk-0", ["--topk=[0]"], "config key 'topk' = [0]"),
    ("valid-metric-not-computed", ["--valid_metric=Recall@30"],
     "config key 'valid_metric' = 'Recall@30'"),
    ("unknown-metric", ["--metrics=['Recal']"], "unknown metric 'Recal'"),
    ("split-seed-text", ["--split_seed=abc"], "config key 'split_seed' = 'abc'"),
    ("trial-checkpoint-negative", ["--trial_checkpoint_s=-1"],
     "config key 'trial_checkpoint_s' = -1"),
    ("bool-key-text", ["--kg_linked_items_only=maybe"], "config key 'kg_linked_items_only'"),
    ("learner", ["--learner=adamm"], "config key 'learner' = 'adamm'"),
    ("saved-not-bool", ["--saved=maybe"], "--saved='maybe': expected True or False"),
    ("not-an-override", ["epochs=3"], "unrecognised argument 'epochs=3'"),
    ("override-twice", ["--epochs=1", "--epochs=2"], "--epochs given twice"),
    ("option-without-value", ["--result_file"], "argument --result_file: expected one argument"),
    ("yaml-syntax", ["--config_files=bad_syntax.yaml"], "bad_syntax.yaml:3: YAML syntax error"),
    ("yaml-type", ["--config_files=bad_type.yaml"],
     "config key 'epochs' = 'ten' (from config file bad_type.yaml)"),
    ("yaml-not-a-mapping", ["--config_files=a_list.yaml"],
     "a_list.yaml: expected 'key: value' lines"),
    ("yaml-unknown-key", ["--config_files=typo.yaml"],
     "unknown config key 'learnig_rate' (from config file typo.yaml)"),
    ("config-file-missing", ["--config_files=nowhere.yaml"], "config file not found: nowhere.yaml"),
    ("result-file-is-a-dir", ["--result_file=a_dir"], "--result_file a_dir is a directory"),
    ("resume-missing", ["--resume=nowhere.pth"], "checkpoint not found: nowhere.pth"),
    ("resume-empty", ["--resume=empty.pth"], "checkpoint empty.pth is empty"),
    ("resume-garbage", ["--resume=garbage.pth"], "is truncated or not a checkpoint"),
    ("resume-foreign", ["--resume=foreign.pth"], "not a recbole-kgin checkpoint"),
]


@pytest.mark.parametrize("case,extra,fragment", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input(work, capsys, case, extra, fragment):
    argv = extra if case.startswith("resume") else data_args(work) + extra
    if case.startswith("unknown-model"):
        argv = [a for a in data_args(work) if not a.startswith("--model")] + extra
    expect_error(argv, fragment, work, capsys)


def test_unknown_dataset(work, capsys):
    argv = [a for a in data_args(work) if not a.startswith("--dataset")] + ["--dataset=nosuch"]
    expect_error(argv, "dataset 'nosuch' not found", work, capsys)


def test_model_names_are_case_insensitive(work):
    from recbole_kgin.config_check import resolve_model

    assert resolve_model("kgin") == "KGIN" and resolve_model("lightgcn") == "LightGCN"
    assert resolve_model("recbolekgin") == "RecBoleKGIN"
    from recbole_kgin.quick_start import create_config

    config = create_config("kgin", "tiny", None, {"data_path": str(work)})
    assert config["model"] == "KGIN"


def test_config_file_name_with_a_space(work):
    from recbole_kgin.cli import config_file_list

    spaced = work / "my settings.yaml"
    spaced.write_text("epochs: 1\n")
    assert config_file_list([str(spaced)]) == [str(spaced)]
    assert config_file_list(["typo.yaml bad_type.yaml"]) == ["typo.yaml", "bad_type.yaml"]


# ------------------------------------------------------------------ checkpoints of a real run
def _copy_with(checkpoint, root, name, **changes):
    data = torch.load(checkpoint, weights_only=True)
    data.update(changes)
    target = root / name
    from recbole_kgin import checkpoint as ckpt

    ckpt.save(data, target)  # sealed with the digest of its new content
    return target


def test_truncated_checkpoint(trained, work, capsys):
    _, checkpoint = trained
    data = checkpoint.read_bytes()
    (work / "cut.pth").write_bytes(data[: len(data) // 2])
    expect_error(["--resume=cut.pth"], "is truncated or not a checkpoint", work, capsys)


class NotPlain:  # any pickled object, as the Config in a RecBole checkpoint
    pass


def test_pickled_checkpoint_needs_trust(trained, work, capsys):
    torch.save({"config": NotPlain(), "state_dict": {}}, work / "pickled.pth")
    expect_error(["--resume=pickled.pth"], "pass --trust_checkpoint only if you trust", work,
                 capsys)


def test_resume_refuses_model_and_changed_keys(trained, work, capsys):
    _, checkpoint = trained
    expect_error([f"--resume={checkpoint}", "--model=KGIN"], "do not pass --model", work, capsys)
    expect_error([f"--resume={checkpoint}", "--epochs=5"],
                 "--epochs cannot change when continuing", work, capsys)


def test_checkpoint_of_other_data_is_refused(trained, work, capsys):
    root, checkpoint = trained
    moved = _copy_with(checkpoint, work, "other.pth",
                       config_overrides={**torch.load(checkpoint, weights_only=True)[
                           "config_overrides"], "data_path": str(work)})
    # same dataset name and settings, other files: the fingerprint differs
    expect_error(["recommend", "--checkpoint", str(moved), "--users", "u1"],
                 "was trained on other data", work, capsys)
    expect_error([f"--resume={moved}"], "was trained on other data", work, capsys)


def test_recommend_and_explain_bad_requests(trained, work, capsys):
    _, checkpoint = trained
    expect_error(["recommend", "--checkpoint", str(checkpoint), "--users", "nobody"],
                 "unknown user 'nobody'", work, capsys)
    expect_error(["recommend", "--checkpoint", str(checkpoint), "--users", "u1", "--topk", "0"],
                 "--topk='0': expected an integer >= 1", work, capsys)
    expect_error(["recommend", "--checkpoint", str(checkpoint)],
                 "the following arguments are required: --users", work, capsys)
    expect_error(["recommend", "--checkpoint", "empty.pth", "--users", "u1"],
                 "checkpoint empty.pth is empty", work, capsys)
    expect_error(["explain", "--checkpoint", str(checkpoint), "--user", "u1", "--item", "nope"],
                 "unknown item 'nope'", work, capsys)
    other = _copy_with(checkpoint, work, "bpr.pth", model="BPR")
    expect_error(["explain", "--checkpoint", str(other), "--user", "u1"],
                 "explain needs a KGIN checkpoint", work, capsys)


# ------------------------------------------------------------------ conversion
def _kgin_text_dataset(src):
    src.mkdir()
    (src / "train.txt").write_text("0 0 1 2\n1 1 2\n")
    (src / "test.txt").write_text("0 3\n1 0\n")
    (src / "kg_final.txt").write_text("0 0 4\n1 0 4\n2 1 5\n3 1 5\n")
    return src


CONVERT_CASES = [
    ("reserved-name", ["--name", "ml-100k"], "dataset name 'ml-100k' is reserved"),
    ("invalid-name", ["--name", "bad name!"], "invalid dataset name 'bad name!'"),
    ("missing-src", ["--name", "x", "--src", "nowhere"], "nowhere: source directory not found"),
    ("bad-resplit", ["--name", "x", "--resplit", "0.5,0.5"],
     "expected three positive ratios summing to 1"),
    ("bad-line", ["--name", "x", "BADLINE"], "train.txt:2:"),
]


@pytest.mark.parametrize("case,extra,fragment", CONVERT_CASES, ids=[c[0] for c in CONVERT_CASES])
def test_convert_bad_input(work, capsys, case, extra, fragment):
    src = _kgin_text_dataset(work / "src")
    if "BADLINE" in extra:
        extra = [e for e in extra if e != "BADLINE"]
        (src / "train.txt").write_text("0 0 1 2\n1 x 2\n")
    if "--src" not in extra:
        extra = extra + ["--src", str(src)]
    expect_error(["convert", *extra, "--out", str(work / "out")], fragment, work, capsys, code=1)


def test_stale_temporary_directory_of_a_killed_convert_is_removed(work, capsys):
    src = _kgin_text_dataset(work / "src")
    out = work / "out"
    out.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    stale = out / f".x.tmp-{dead_pid}-abcd"
    stale.mkdir()
    (stale / "x.kg").write_text("partial")
    live = out / f".y.tmp-{os.getpid()}-efgh"
    live.mkdir()
    assert main(["convert", "--src", str(src), "--name", "x", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert not stale.exists() and f"removed {stale}" in printed
    assert live.exists() and "still running" in printed
    assert (out / "x" / "x.yaml").is_file()


def test_topk_above_the_item_count_stops_before_training(work, capsys):
    """Known only once the data are read: RecBole's log may exist, nothing else is written."""
    before = {k: v for k, v in snapshot(work).items() if not k.startswith("log")}
    assert main(data_args(work) + ["--topk=[100]", "--valid_metric=Recall@100",
                                   "--result_file=r.json"]) == 2
    err = capsys.readouterr().err.strip()
    assert "config key 'topk' = [100]: dataset 'tiny' has only 30 items" in err and "\n" not in err
    after = {k: v for k, v in snapshot(work).items() if not k.startswith("log")}
    assert after == before

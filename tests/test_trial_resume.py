"""A trial of ``tune`` / ``compare`` stopped mid-way continues from its checkpoint (runner's
``partial_file``), exactly as if it had not stopped; an unusable checkpoint is named and ignored."""

import pytest
import torch

from recbole_kgin.experiment.runner import (ValidationReporter, build_dataset_blob,
                                            partial_name, run_configuration)
from recbole_kgin.quick_start import create_config
from synthetic import tiny_config, write_kg_dataset

EPOCHS = 6


class Killed(Exception):
    """Stands for the kill: raised by the validation callback of one epoch."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("trial_resume")
    write_kg_dataset(root, n_users=40, n_items=50, per_user=8)
    layer = tiny_config(root, epochs=EPOCHS, stopping_step=50, embedding_size=16,
                        context_hops=2, train_batch_size=64)
    blob = build_dataset_blob("KGIN", "tiny", layer, root / "blob")
    return root, layer, blob


def _config(data, **extra):
    root, layer, _ = data
    return create_config("KGIN", "tiny", config_dict={**layer, "trial_checkpoint_s": 0, **extra})


def _run(data, partial=None, kill_at=None, final=False, **extra):
    reports = []

    def report(values):
        if kill_at is not None and values["epoch"] == kill_at:
            raise Killed
        reports.append(values)

    reporter = ValidationReporter(True, EPOCHS, report)
    result, per_user, _ = run_configuration(_config(data, **extra), data[2], evaluate_test=final,
                                            on_validation=reporter, partial_file=partial)
    return result, per_user, reporter, reports


@pytest.fixture(scope="module")
def uninterrupted(data):
    return {final: _run(data, final=final) for final in (False, True)}


@pytest.mark.parametrize("final", [False, True], ids=["search", "final"])
def test_a_run_killed_mid_way_continues_to_the_uninterrupted_result(data, uninterrupted,
                                                                    tmp_path, final):
    expected, expected_users, expected_reporter, _ = uninterrupted[final]
    partial = tmp_path / "partial" / "run.pth"
    partial.parent.mkdir()
    with pytest.raises(Killed):
        _run(data, partial, kill_at=3, final=final)
    # the validation of epoch 3 raised before that epoch's checkpoint: epoch 2 is the last kept
    assert torch.load(partial, weights_only=True)["training"]["epoch"] == 2
    result, per_user, reporter, reports = _run(data, partial, final=final)
    assert result["resumed_from_epoch"] == 3
    assert [r["epoch"] for r in reports] == [3, 4, 5]  # only the epochs it trained again
    assert result["valid_history"] == expected["valid_history"]
    assert result["best_valid_score"] == expected["best_valid_score"]
    assert result["best_epoch"] == expected["best_epoch"]
    assert result["epochs_run"] == expected["epochs_run"] == EPOCHS
    assert reporter.last == expected_reporter.last  # the running best covers the restored epochs
    assert result["test_result"] == expected["test_result"]
    if final:
        assert result["test_result"] is not None
        for key in ("recall@20", "ndcg@20"):
            assert (per_user[key] == expected_users[key]).all()
    assert expected["resumed_from_epoch"] is None


def test_a_finished_checkpoint_trains_nothing_more(data, uninterrupted, tmp_path):
    partial = tmp_path / "done.pth"
    first = _run(data, partial)[0]
    result, _, reporter, reports = _run(data, partial)
    assert result["resumed_from_epoch"] == EPOCHS and reports == []
    assert result["best_valid_score"] == first["best_valid_score"]
    assert reporter.last == uninterrupted[False][2].last  # what the trial's last report needs


def test_an_unusable_checkpoint_is_named_and_the_run_starts_again(data, uninterrupted, tmp_path,
                                                                  capsys):
    expected = uninterrupted[False][0]
    torn = tmp_path / "torn.pth"
    torn.write_bytes(b"not a checkpoint")
    result = _run(data, torn)[0]
    err = capsys.readouterr().err
    assert f"not continuing from {torn}" in err and "training from the first epoch" in err
    assert result["resumed_from_epoch"] is None
    assert result["valid_history"] == expected["valid_history"]

    other = tmp_path / "other.pth"
    with pytest.raises(Killed):
        _run(data, other, kill_at=2, learning_rate=0.01)
    result = _run(data, other)[0]
    err = capsys.readouterr().err
    assert "made with another configuration (learning_rate: 0.01 then, 0.0001 now)" in err
    assert result["resumed_from_epoch"] is None
    assert result["valid_history"] == expected["valid_history"]


def test_checkpoints_are_throttled_but_the_last_epoch_is_always_written(data, tmp_path,
                                                                        monkeypatch):
    saves = []
    from recbole_kgin.trainer import RecordingTrainerMixin

    original = RecordingTrainerMixin._save_checkpoint

    def counting(self, epoch, *args, **kwargs):
        saves.append(epoch)
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(RecordingTrainerMixin, "_save_checkpoint", counting)
    partial = tmp_path / "slow.pth"
    _run(data, partial, trial_checkpoint_s=3600)
    assert saves == [EPOCHS - 1]
    assert torch.load(partial, weights_only=True)["training"]["finished"]
    saves.clear()
    _run(data, tmp_path / "every.pth")  # trial_checkpoint_s 0: after every epoch
    assert saves == list(range(EPOCHS))


def test_partial_names_follow_what_a_run_computes_not_where():
    setup = {"model": "KGIN", "dataset": "tiny", "mode": "search",
             "user_layer": {"data_path": "/a", "epochs": 5, "trial_checkpoint_s": 0}}
    moved = {**setup, "user_layer": {"data_path": "/b", "epochs": 5, "trial_checkpoint_s": 60}}
    name = partial_name(setup, {"learning_rate": 0.001})
    assert name.startswith("search-") and name.endswith(".pth")
    assert partial_name(moved, {"learning_rate": 0.001}) == name
    assert partial_name(setup, {"learning_rate": 0.01}) != name
    assert partial_name({**setup, "mode": "final"}, {"learning_rate": 0.001}) != name
    assert partial_name({**setup, "user_layer": {"epochs": 6}}, {"learning_rate": 0.001}) != name


def test_one_epoch_models_keep_no_partial_checkpoint(data, tmp_path):
    """EASE trains in one epoch (RecBole's traditional trainer): nothing to continue, and its
    item-item matrix is not written for it."""
    root, layer, _ = data
    blob = build_dataset_blob("EASE", "tiny", layer, root / "blob-ease")
    config = create_config("EASE", "tiny", config_dict={**layer, "trial_checkpoint_s": 0})
    partial = tmp_path / "ease.pth"
    result = run_configuration(config, blob, evaluate_test=False, partial_file=partial)[0]
    assert result["resumed_from_epoch"] is None and not partial.exists()

"""The entry point: training run, overrides, and one-line errors for bad requests."""

import pytest

from recbole_kgin.cli import main
from recbole_kgin.errors import UsageError, split_overrides
from synthetic import write_kg_dataset


def test_split_overrides():
    assert split_overrides(["--epochs=3", "--ind=cosine", "--eval_args={'mode': 'full'}"]) == {
        "epochs": "3", "ind": "cosine", "eval_args": "{'mode': 'full'}"}
    for bad in (["epochs=3"], ["--epochs"], ["--="], ["--a=1", "--a=2"]):
        with pytest.raises(UsageError):
            split_overrides(bad)


def test_train_run_prints_metrics_table(tmp_path, capsys):
    write_kg_dataset(tmp_path)
    code = main(["--model=KGIN", "--dataset=tiny", f"--data_path={tmp_path}",
                 f"--checkpoint_dir={tmp_path / 'saved'}", "--epochs=1", "--eval_step=1",
                 "--train_batch_size=256", "--use_gpu=False", "--show_progress=False",
                 "--state=WARNING", "--load_col={'inter': ['user_id', 'item_id'], "
                 "'kg': ['head_id', 'relation_id', 'tail_id'], 'link': ['item_id', 'entity_id']}"])
    out = capsys.readouterr().out
    assert code == 0
    assert "KGIN on tiny" in out and "Recall@20" in out and "KGIN test" in out
    assert list((tmp_path / "saved").glob("KGIN-*.pth"))


@pytest.mark.parametrize("argv,fragment", [
    (["--model=NoSuchModel", "--dataset=ml-100k"], "NoSuchModel"),
    (["--model=KGIN", "--dataset=ml-100k", "--config_files=/nonexistent.yaml"], "/nonexistent.yaml"),
    (["--model=KGIN", "--dataset=ml-100k", "epochs=3"], "epochs=3"),
])
def test_bad_requests_exit_2_with_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and fragment in err and "\n" not in err

"""The installed entry points: ``run_recbole_kgin.py`` and the ``recbole-kgin`` console script are
one CLI, and a one-epoch run validates and tests even though KGIN validates every 10 epochs."""

import ast
import importlib
import re
from pathlib import Path

import pytest

import run_recbole_kgin
from recbole_kgin.cli import main
from synthetic import write_kg_dataset

ROOT = Path(__file__).resolve().parents[1]


def _console_scripts():
    """``entry_points["console_scripts"]`` as written in setup.py (read, not executed)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            return ast.literal_eval(node.value)["console_scripts"]
    raise AssertionError("setup.py declares no entry_points")


def test_console_script_is_the_run_script_cli():
    scripts = dict(s.replace(" ", "").split("=", 1) for s in _console_scripts())
    module, func = scripts["recbole-kgin"].split(":")
    assert getattr(importlib.import_module(module), func) is run_recbole_kgin.main is main


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert "convert, compare, tune" in capsys.readouterr().out


def test_one_epoch_run_validates_and_tests(tmp_path, capsys):
    """KGIN.yaml validates every 10 epochs; with --epochs=1 RecBole's trainer caps the step at the
    number of epochs, so the one epoch is validated, checkpointed and tested."""
    write_kg_dataset(tmp_path)
    code = main(["--model=KGIN", "--dataset=tiny", f"--data_path={tmp_path}",
                 f"--checkpoint_dir={tmp_path / 'saved'}", "--epochs=1",
                 "--train_batch_size=256", "--use_gpu=False", "--show_progress=False",
                 "--state=WARNING", "--load_col={'inter': ['user_id', 'item_id'], "
                 "'kg': ['head_id', 'relation_id', 'tail_id'], 'link': ['item_id', 'entity_id']}"])
    out = capsys.readouterr().out
    assert code == 0
    assert "best epoch 1 of 1" in out
    for row in ("KGIN valid", "KGIN test"):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(row))
        cells = [c.strip() for c in line.split("|")[1:]]
        assert cells and all(re.fullmatch(r"\d\.\d{4}", c) for c in cells), line
    assert list((tmp_path / "saved").glob("KGIN-*.pth"))

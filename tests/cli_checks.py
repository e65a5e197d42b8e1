"""What the command-line tests share: the tiny dataset's ``load_col`` override, a snapshot of a
working directory, and the check that a bad input gives one line, an exit code and no file."""

from pathlib import Path

from recbole_kgin.cli import main

LOAD_COL = ("--load_col={'inter': ['user_id', 'item_id'], "
            "'kg': ['head_id', 'relation_id', 'tail_id'], 'link': ['item_id', 'entity_id']}")


def snapshot(root):
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(root).rglob("*")}


def expect_error(argv, fragment, root, capsys, code=2):
    """``main(argv)`` exits ``code`` with one stderr line holding ``fragment``, no traceback, and
    writes nothing under ``root``; returns the line."""
    before = snapshot(root)
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert fragment in err, err
    assert "\n" not in err, err
    assert "Traceback" not in err
    assert snapshot(root) == before, "the command wrote something"
    return err

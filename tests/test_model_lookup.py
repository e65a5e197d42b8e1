"""Model lookup leaves the process as it found it: RecBole's get_model imports its sequential
models on the way to the knowledge-aware ones, and one of them (SINE) turns autograd's anomaly
detection on at import, which slows every later training step of the process."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_looking_up_a_recbole_kg_model_keeps_anomaly_detection_off():
    # a fresh process: in this one RecBole's sequential models may have been imported already
    done = _run("""
        import sys
        import torch
        import recbole_kgin
        from recbole_kgin.utils import get_model
        assert "recbole.model.sequential_recommender" not in sys.modules
        get_model("CKE")  # RecBole's, found after its sequential models
        assert "recbole.model.sequential_recommender.sine" in sys.modules  # the import happened
        print(torch.is_anomaly_enabled())
        torch.autograd.set_detect_anomaly(True)
        get_model("KTUP")
        print(torch.is_anomaly_enabled())  # a caller's own setting is kept too
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True"]


def test_resolving_a_model_name_keeps_anomaly_detection_off():
    # the command line's model names are resolved by importing the model's module
    done = _run("""
        import sys
        import torch
        import recbole_kgin
        from recbole_kgin.config_check import resolve_model
        assert resolve_model("gru4rec") == "GRU4Rec"  # a sequential model: its package imports SINE
        assert "recbole.model.sequential_recommender.sine" in sys.modules
        print(torch.is_anomaly_enabled())
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"]

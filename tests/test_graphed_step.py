"""``cuda_graph`` (recbole_kgin/graphed_step.py): the orchestration around CUDA's recording.

On the CPU a stand-in for ``cuda_capture`` records nothing: its "graph" re-runs the recorded
function on replay. That checks what this package adds (fixed input tensors that each batch is
copied into, warm-up and odd-sized batches run eagerly, the loss read from the recorded output,
a failed recording falling back to eager steps, the trainer's epoch): a replay that read the
original batch instead of the fixed inputs, or skipped a copy, would train on other pairs and
the parameters would differ. The recording itself is checked by the CUDA case (skipped without
a GPU; benchmarks/gpu_checks.sh runs it).
"""

import warnings

import pytest
import torch

from recbole.utils import KGDataLoaderState

from recbole_kgin.graphed_step import GraphedStep
from recbole_kgin.model.kgin import KGIN
from recbole_kgin.quick_start import create_config, load_data
from synthetic import tiny_config, write_kg_dataset


class Rerun:
    """Stand-in for a CUDA graph: replay re-runs the recorded step into its output tensor."""

    recorded = 0

    def __init__(self, step):
        self.step, self.output = step, torch.zeros(())

    def replay(self):
        self.output.copy_(self.step())

    def pool(self):
        return None


def stand_in(step, pool=None):
    Rerun.recorded += 1
    graph = Rerun(step)
    return graph, graph.output


def failing(step, pool=None):
    raise RuntimeError("operation not permitted when stream is capturing")


def _model_and_batches(tmp_path, device="cpu", **extra):
    write_kg_dataset(tmp_path, n_users=70, n_items=90)
    settings = {"embedding_size": 16, "static_graph": True, "train_batch_size": 40, **extra}
    config = create_config("KGIN", "tiny", config_dict=tiny_config(tmp_path, **settings))
    _, train_data, _, _ = load_data(config)
    train_data.set_mode(KGDataLoaderState.RS)
    return config, train_data


def _epochs(train_data, epochs=2):
    """The batches of ``epochs`` epochs, drawn once (the same pairs and negatives for every run)."""
    return [list(train_data) for _ in range(epochs)]


def _train(config, train_data, device, graphed=None, batches=None, **step_args):
    torch.manual_seed(0)
    model = KGIN(config, train_data._dataset).to(device)
    capturable = {"capturable": True} if torch.device(device).type == "cuda" else {}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, foreach=True, **capturable)
    step = GraphedStep(model, optimizer, (model.USER_ID, model.ITEM_ID, model.NEG_ITEM_ID),
                       **step_args) if graphed else None
    torch.manual_seed(1)
    losses = []
    model.train()
    for epoch in batches:
        for batch in epoch:
            batch = batch.to(device)
            if step is None:
                optimizer.zero_grad(set_to_none=True)
                loss = model.calculate_loss(batch)
                loss.backward()
                optimizer.step()
            else:
                loss = step(batch)
            losses.append(float(loss.detach()))
    return model, losses, step


def test_graphed_steps_train_exactly_as_eager_steps(tmp_path):
    config, train_data = _model_and_batches(tmp_path)
    batches = _epochs(train_data)
    sizes = [len(b) for b in batches[0]]
    assert len(set(sizes)) == 2  # full batches and a smaller last one
    eager, eager_losses, _ = _train(config, train_data, "cpu", batches=batches)
    Rerun.recorded = 0
    graphed, graphed_losses, step = _train(config, train_data, "cpu", graphed=True, warmup=1,
                                           capture=stand_in, batches=batches)
    assert graphed_losses == eager_losses
    for a, b in zip(eager.parameters(), graphed.parameters()):
        assert torch.equal(a, b)
    # one recording for the full batches; the odd last batch: warm-up then its own recording
    assert Rerun.recorded == 2 and set(step.graphs) == set(sizes)
    assert step.replays == len(sizes) * 2 - 2 and step.failed is None


def test_a_failed_recording_warns_once_and_stays_eager(tmp_path):
    config, train_data = _model_and_batches(tmp_path)
    batches = _epochs(train_data)
    eager, eager_losses, _ = _train(config, train_data, "cpu", batches=batches)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed, losses, step = _train(config, train_data, "cpu", graphed=True, warmup=1,
                                       capture=failing, batches=batches)
    messages = [str(w.message) for w in caught if "cuda_graph" in str(w.message)]
    assert len(messages) == 1 and "stream is capturing" in messages[0]
    assert losses == eager_losses and step.replays == 0 and not step.graphs
    for a, b in zip(eager.parameters(), graphed.parameters()):
        assert torch.equal(a, b)


def test_trainer_epoch_with_graphed_steps_equals_recboles_epoch(tmp_path):
    from recbole_kgin.trainer import KGINTrainer

    from recbole.utils import init_seed

    results = []
    for graphed in (False, True):
        config, train_data = _model_and_batches(tmp_path)  # a fresh loader: the same batches
        init_seed(0, True)
        trainer = KGINTrainer(config, KGIN(config, train_data._dataset))
        init_seed(1, True)
        if graphed:
            loss = trainer._graphed_epoch(train_data, 0, capture=stand_in)
        else:
            loss = trainer._train_epoch(train_data, 0)
        results.append((loss, [p.detach().clone() for p in trainer.model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.equal(a, b)


def test_cuda_graph_is_refused_with_one_line_naming_the_key(tmp_path):
    from recbole_kgin.trainer import KGINTrainer, cuda_graph_problem

    config, train_data = _model_and_batches(tmp_path)
    config["cuda_graph"] = True
    with pytest.raises(ValueError, match="'cuda_graph' = True: needs a CUDA device"):
        KGINTrainer(config, KGIN(config, train_data._dataset))
    assert cuda_graph_problem(config, "cuda") is None
    config["static_graph"] = False
    assert "static_graph" in cuda_graph_problem(config, "cuda")
    config["static_graph"] = True
    config["clip_grad_norm"] = {"max_norm": 5}
    assert "clip_grad_norm" in cuda_graph_problem(config, "cuda")


def test_recorded_cuda_steps_equal_eager_steps(tmp_path):
    """The real recording (CUDA only): the same losses and parameters as eager steps, up to
    float32 rounding (the same kernels and random draws)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: benchmarks/gpu_checks.sh runs this on a GPU")
    config, train_data = _model_and_batches(tmp_path)
    batches = _epochs(train_data, epochs=3)
    eager, eager_losses, _ = _train(config, train_data, "cuda", batches=batches)
    graphed, losses, step = _train(config, train_data, "cuda", graphed=True, batches=batches)
    assert step.failed is None and step.replays > 0, step.failed
    assert losses == pytest.approx(eager_losses, rel=1e-4, abs=1e-6)
    for a, b in zip(eager.parameters(), graphed.parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)

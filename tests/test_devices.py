"""KGIN on every available device: the CPU always, a CUDA GPU when one is present."""

import torch

from recbole.data.interaction import Interaction

from recbole_kgin.model.kgin import KGIN
from recbole_kgin.quick_start import create_config, load_data, run_recbole_kgin
from synthetic import tiny_config, write_kg_dataset


def _tiny_model(tmp_path, **overrides):
    write_kg_dataset(tmp_path, n_users=40, n_items=60)
    config = create_config("KGIN", "tiny", config_dict=tiny_config(
        tmp_path, embedding_size=16, **overrides))
    _, train_data, _, _ = load_data(config)
    torch.manual_seed(0)
    return KGIN(config, train_data._dataset)


def _batch(model, device, size=32):
    gen = torch.Generator().manual_seed(1)
    return Interaction({
        model.USER_ID: torch.randint(1, model.n_users, (size,), generator=gen),
        model.ITEM_ID: torch.randint(1, model.n_items, (size,), generator=gen),
        model.NEG_ITEM_ID: torch.randint(1, model.n_items, (size,), generator=gen),
    }).to(device)


def test_forward_backward_on_device(tmp_path, device):
    model = _tiny_model(tmp_path).to(device)
    assert all(t.device.type == device.type for t in [*model.parameters(), *model.buffers()])
    model.train()
    loss = model.calculate_loss(_batch(model, device))
    assert loss.device.type == device.type and torch.isfinite(loss)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    model.eval()
    scores = model.full_sort_predict({model.USER_ID: torch.arange(4, device=device)})
    assert scores.device.type == device.type and scores.shape == (4 * model.n_items,)


def test_cuda_computes_what_the_cpu_computes(tmp_path, cuda_device):
    """Same weights, no dropout: evaluation scores, loss and gradients agree across devices."""
    cpu = _tiny_model(tmp_path, node_dropout_rate=0.0, mess_dropout_rate=0.0)
    gpu = _tiny_model(tmp_path / "copy", node_dropout_rate=0.0, mess_dropout_rate=0.0)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to(cuda_device)
    users = torch.arange(cpu.n_users)
    cpu.eval(), gpu.eval()
    expected = cpu.full_sort_predict({cpu.USER_ID: users})
    got = gpu.full_sort_predict({gpu.USER_ID: users.to(cuda_device)}).cpu()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
    cpu.train(), gpu.train()
    cpu_loss = cpu.calculate_loss(_batch(cpu, "cpu"))
    gpu_loss = gpu.calculate_loss(_batch(gpu, cuda_device))
    assert torch.allclose(gpu_loss.cpu(), cpu_loss, rtol=1e-4, atol=1e-6)
    cpu_loss.backward(), gpu_loss.backward()
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters()):
        assert torch.allclose(p_gpu.grad.cpu(), p_cpu.grad, rtol=1e-3, atol=1e-6), name


def test_one_epoch_run_on_gpu(tmp_path, cuda_device):
    """RecBole's own device selection (use_gpu, gpu_id) trains, validates and tests on the GPU."""
    write_kg_dataset(tmp_path)
    result = run_recbole_kgin("KGIN", "tiny", config_dict=tiny_config(
        tmp_path, use_gpu=True, gpu_id="0"))
    assert result["valid_history"] and result["test_result"] is not None
    checkpoint = torch.load(result["saved_model_file"], weights_only=True)
    assert str(checkpoint["config"]["device"]).startswith("cuda")  # it ran where it was asked
    # the weights are saved from the CPU, so that the file also loads where there is no GPU
    assert checkpoint["state_dict"] and not any(
        t.is_cuda for t in checkpoint["state_dict"].values())

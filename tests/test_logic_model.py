"""LogicGateNetwork (Lightning) learns a small Boolean function exactly."""

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_discrete.models.logic_gate_network import LogicGateNetwork
from lightning_discrete.nn.logic_c import find_c_compiler


def test_learns_3bit_parity_exactly(tmp_path, parity6):
    pl.seed_everything(0)
    x, y = parity6
    model = LogicGateNetwork(
        in_features=6, num_neurons=64, num_layers=3, num_classes=2, group_sum_tau=2.0,
        init="gaussian", tau_f=0.0, tau_b=1.0, wiring_seed=0,
        optimizer=lambda p: torch.optim.Adam(p, lr=0.05),
    )
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    trainer = pl.Trainer(
        max_steps=300, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(model, loader)
    model.eval()
    with torch.no_grad():
        scores = model(x)
    assert (scores.argmax(1) == y).all()
    packed = model.to_packed()
    assert torch.equal(packed(x), scores)
    if find_c_compiler() is None:
        pytest.skip("no C compiler (cc/gcc/clang) on PATH")
    lib = model.to_c(tmp_path / "parity.c", compile=True)
    assert torch.equal(lib(x), scores)


def test_hparams_and_errors():
    with pytest.raises(ValueError, match="divisible"):
        LogicGateNetwork(in_features=8, num_neurons=10, num_layers=1, num_classes=3)
    m = LogicGateNetwork(in_features=8, num_neurons=12, num_layers=2, num_classes=3, estimator="gumbel_softmax", tau=0.5)
    assert all(l.estimator == "gumbel_softmax" and float(l.tau_f) == 0.5 for l in m.layers)
    assert m(torch.rand(4, 2, 4)).shape == (4, 3)

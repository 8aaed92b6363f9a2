"""Two CPU processes (``ddp_spawn``, gloo): monitors agree with one process and never hang."""

import pytest
import torch
import torch.distributed
from torch.utils.data import TensorDataset
from lightning.pytorch import Trainer, seed_everything

from lightning_discrete.callbacks import LatentUtilizationMonitor
from lightning_discrete.metrics import perplexity_from_counts

from _callback_helpers import MixedNet, binary_images, classification_data, loader, set_free_master_port, tiny_autoencoder, trainer_kwargs
from test_callbacks_monitors import _all_callbacks, check_all_metrics

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _val_data():
    """48 rows whose even and odd rows (the two ranks' shards) come from different distributions."""
    a = binary_images(24, seed=0).tensors[0]
    b = (torch.rand(24, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    return TensorDataset(torch.stack([a, b], 1).reshape(48, 8))


def _val_metrics(devices, monkeypatch):
    if devices > 1:
        set_free_master_port(monkeypatch)
    seed_everything(0)
    model = tiny_autoencoder()
    kw = trainer_kwargs(devices=devices)
    if devices > 1:
        kw["strategy"] = "ddp_spawn"
    trainer = Trainer(callbacks=[LatentUtilizationMonitor(stages="val")], **kw)
    # 48 rows, batch 8: 6 batches -> 3 per rank, no padding duplicates
    trainer.validate(model, loader(_val_data(), 8), verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if "/bottleneck" in k}


@pytest.mark.timeout(120)
def test_ddp_val_perplexity_equals_single_process(monkeypatch):
    single = _val_metrics(1, monkeypatch)
    ddp = _val_metrics(2, monkeypatch)
    assert set(single) == {
        "val/perplexity/bottleneck",
        "val/dead_codes/bottleneck",
        "val/joint_perplexity/bottleneck",
        "val/joint_used/bottleneck",
    }
    assert ddp == pytest.approx(single, rel=1e-6)
    assert single["val/joint_used/bottleneck"] > 1
    # the agreement is not luck: rank 0's half alone (DistributedSampler: rows 0, 2, 4, ...) differs
    seed_everything(0)
    model = tiny_autoencoder()
    with torch.no_grad():
        codes = model.encode(_val_data().tensors[0][0::2]).argmax(-1)
    counts = torch.stack([torch.bincount(codes[:, l], minlength=4) for l in range(2)])
    half = float(perplexity_from_counts(counts).mean())
    assert half != pytest.approx(single["val/perplexity/bottleneck"], rel=1e-4)


@pytest.mark.timeout(150)
def test_ddp_all_monitors_do_not_hang(monkeypatch):
    set_free_master_port(monkeypatch)
    seed_everything(0)
    model = MixedNet()
    trainer = Trainer(
        max_epochs=2,
        callbacks=_all_callbacks(),
        **trainer_kwargs(devices=2, strategy="ddp_spawn", accumulate_grad_batches=2),
    )
    trainer.fit(model, loader(classification_data(32), 4), loader(classification_data(16, seed=1), 4))
    check_all_metrics(trainer.callback_metrics)

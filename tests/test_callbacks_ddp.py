"""Two CPU processes (``ddp_spawn``, gloo): monitors agree with one process and never hang."""

import math

import pytest
import torch
import torch.distributed
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import TensorDataset

from lightning_discrete.callbacks import LatentUtilizationMonitor
from lightning_discrete.metrics import perplexity_from_counts

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _val_data(binary_images):
    """48 rows whose even and odd rows (the two ranks' shards) come from different distributions."""
    a = binary_images(24, seed=0).tensors[0]
    b = (torch.rand(24, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    return TensorDataset(torch.stack([a, b], 1).reshape(48, 8))


@pytest.mark.timeout(120)
def test_ddp_val_perplexity_equals_single_process(free_master_port, make_trainer, tiny_autoencoder, binary_images, loader):
    def val_metrics(devices):
        seed_everything(0)
        kw = {"devices": devices, "strategy": "ddp_spawn"} if devices > 1 else {}
        trainer = make_trainer(callbacks=[LatentUtilizationMonitor(stages="val")], **kw)
        # 48 rows, batch 8: 6 batches -> 3 per rank, no padding duplicates
        trainer.validate(tiny_autoencoder(), loader(_val_data(binary_images), 8), verbose=False)
        return {k: float(v) for k, v in trainer.callback_metrics.items() if "/bottleneck" in k}

    single = val_metrics(1)
    ddp = val_metrics(2)
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
        codes = model.encode(_val_data(binary_images).tensors[0][0::2]).argmax(-1)
    counts = torch.stack([torch.bincount(codes[:, l], minlength=4) for l in range(2)])
    half = float(perplexity_from_counts(counts).mean())
    assert half != pytest.approx(single["val/perplexity/bottleneck"], rel=1e-4)


@pytest.mark.timeout(150)
def test_ddp_all_monitors_do_not_hang(tmp_path, free_master_port, make_trainer, all_monitors, mixed_net, classification_data, loader):
    """Every monitor, with mid-epoch checkpoints (their ``state_dict`` sums counts across ranks)."""
    seed_everything(0)
    callbacks = [
        *all_monitors(),
        ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1, filename="{step}"),
    ]
    trainer = make_trainer(max_epochs=2, callbacks=callbacks, devices=2, strategy="ddp_spawn", accumulate_grad_batches=2,
                           enable_checkpointing=True, log_every_n_steps=1)  # every step logs: the saturation check runs
    trainer.fit(mixed_net(), loader(classification_data(32), 4), loader(classification_data(16, seed=1), 4))
    metrics = trainer.callback_metrics
    names = {"train/perplexity/code", "val/perplexity/units", "active_units/all", "grad_snr/mean",
             "grad_snr_window/mean", "gates/perplexity", "temperature/tau_f", "saturation/code", "buried/code",
             "buried/units"}
    assert names <= set(metrics)
    assert all(math.isfinite(float(metrics[k])) for k in names)
    saved = torch.load(tmp_path / "step=1.ckpt", weights_only=False)["callbacks"]
    (utilization,) = [v for k, v in saved.items() if k.startswith("LatentUtilizationMonitor")]
    # after one optimizer step (2 micro-batches of 4 rows per rank): the counts of both ranks
    assert int(utilization["train"]["code"]["total"]) == 2 * 2 * 4

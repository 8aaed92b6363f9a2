"""Multi-node DDP on one machine: the binary network as 2 nodes x 1 process (``num_nodes=2``,
``NODE_RANK`` 0 and 1 in two subprocesses, gloo) against one process on the same global batches."""

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One run of the binary network: 64 training and 32 validation rows, 8 rows per rank and batch,
# 2 epochs, the utilisation and active-unit monitors. Under DDP each rank reads its share of
# every epoch through Lightning's DistributedSampler (training rows shuffled with seed 0 and the
# epoch, validation rows in order); the single process reads the same global batches (rank 0's
# rows of a batch, then rank 1's) 16 at a time. tau_f = 0: the forward is deterministic
# (argmax). SGD, not Adam: Adam's first steps are +-lr for any gradient, so rounding-level
# differences of tiny gradients (a sum over ranks vs. one mean) would become differences of lr.
# The progress bar stays on: it reads the epoch metrics on rank zero only (no collective may
# hide there).
TRAIN = r'''
import sys
import torch
from lightning.pytorch import Trainer, seed_everything
from torch.utils.data import DataLoader, DistributedSampler, Sampler, TensorDataset
from lightning_discrete.callbacks import ActiveUnitMonitor, LatentUtilizationMonitor
from lightning_discrete.models import StochasticBinaryNetwork

num_nodes, out = int(sys.argv[1]), sys.argv[2]


class GlobalBatches(Sampler):
    """The rows of the two ranks' batches, batch by batch, as their DistributedSamplers give them."""

    def __init__(self, n, shuffle):
        self.n, self.shuffle, self.epoch = n, shuffle, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __iter__(self):
        ranks = []
        for rank in range(2):
            sampler = DistributedSampler(range(self.n), num_replicas=2, rank=rank, shuffle=self.shuffle, seed=0)
            sampler.set_epoch(self.epoch)
            ranks.append(torch.tensor(list(sampler)).view(-1, 8))
        return iter(torch.stack(ranks, 1).reshape(-1).tolist())


def data(n, seed, shuffle):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    ds = TensorDataset(x, (x[:, 0] + 0.5 * x[:, 1] > 0).long())
    if num_nodes == 2:
        return DataLoader(ds, batch_size=8)  # Lightning adds the DistributedSampler
    return DataLoader(ds, batch_size=16, sampler=GlobalBatches(n, shuffle))


seed_everything(0)
model = StochasticBinaryNetwork(input_dim=8, hidden_dims=(6, 6), num_classes=2, tau_f=0.0, tau_b=1.0,
                                optimizer=lambda params: torch.optim.SGD(params, lr=0.5))
trainer = Trainer(accelerator="cpu", devices=1, num_nodes=num_nodes, strategy="ddp" if num_nodes > 1 else "auto",
                  max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False,
                  num_sanity_val_steps=0,
                  callbacks=[LatentUtilizationMonitor(), ActiveUnitMonitor()])
trainer.fit(model, data(64, 0, shuffle=True), data(32, 1, shuffle=False))
metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.endswith("_step")}
torch.save({"state": model.state_dict(), "metrics": metrics, "world_size": trainer.world_size},
           f"{out}/rank{trainer.global_rank}.pt")
'''


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_two_nodes_match_one_process_without_sync_warnings(tmp_path, free_master_port):
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_master_port))
    env.pop("LOCAL_RANK", None)
    runs = {}
    for name, num_nodes, node_rank in [("node0", 2, 0), ("node1", 2, 1), ("single", 1, 0)]:
        out = tmp_path / name
        out.mkdir()
        runs[name] = subprocess.Popen([sys.executable, str(script), str(num_nodes), str(out)],
                                      env=dict(env, NODE_RANK=str(node_rank)), cwd=str(tmp_path),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = {}
    try:
        for name, p in runs.items():
            logs[name] = p.communicate(timeout=240)[0]
    finally:
        for p in runs.values():
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in runs.values()), logs
    rank0, rank1 = (torch.load(tmp_path / f"node{r}" / f"rank{r}.pt") for r in (0, 1))
    (single,) = (torch.load(tmp_path / "single" / "rank0.pt"),)
    assert rank0["world_size"] == rank1["world_size"] == 2 and single["world_size"] == 1
    # every rank ends with the same weights, those of one process on the same global batches
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
        torch.testing.assert_close(value, single["state"][key], rtol=1e-5, atol=1e-6)
    # the logged epoch metrics are those of the single process, on both ranks
    names = {"train/loss", "val/loss", "train/perplexity/hidden.1", "val/perplexity/hidden.3", "active_units/all"}
    assert names <= set(single["metrics"])
    assert rank0["metrics"] == rank1["metrics"]
    assert rank0["metrics"] == pytest.approx(single["metrics"], rel=1e-5, abs=1e-6)
    # values already reduced across ranks are logged without Lightning's sync_dist warning
    for name in ("node0", "node1"):
        warned = [line for line in logs[name].splitlines() if "It is recommended to use `self.log(" in line]
        assert not warned, warned

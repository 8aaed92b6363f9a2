"""The ``lightning-discrete`` command line and the recipes, on tiny generated data (no network)."""

from __future__ import annotations

import glob
import importlib
import os

import pytest
import torch
import yaml

pytest.importorskip("torchvision")
pytest.importorskip("jsonargparse")

from lightning_discrete.cli import ConfigError, cli_main, main  # noqa: E402
from lightning_discrete.data import DataError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")
BINARY = os.path.join(RECIPES, "binary_fashion_mnist.yaml")
AUTOENCODER = os.path.join(RECIPES, "autoencoder_mnist.yaml")
LOGIC = os.path.join(RECIPES, "logic_gates_cifar10.yaml")
LOGIC_FMNIST = os.path.join(RECIPES, "logic_gates_fashion_mnist.yaml")
QUICKSTART = os.path.join(RECIPES, "quickstart.yaml")  # its tests: test_quickstart.py
ESTIMATORS = [None, "identity_st", "softmax_st", "gumbel_softmax_st", "decoupled_st"]  # recipes/estimators/<name>.yaml


def _has_logic_gate_network() -> bool:
    try:
        importlib.import_module("lightning_discrete.models.logic_gate_network")
        importlib.import_module("lightning_discrete.callbacks")
        return True
    except ImportError:
        return False


needs_lgn = pytest.mark.skipif(not _has_logic_gate_network(), reason="LogicGateNetwork not available yet")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, make_mnist_layout, make_cifar_layout):
    root = tmp_path_factory.mktemp("data")
    make_mnist_layout(str(root), "FashionMNIST", n_train=40, n_test=16)
    make_mnist_layout(str(root), "MNIST", n_train=40, n_test=16)
    make_cifar_layout(str(root), per_batch=8, n_test=8)
    return str(root)


RECIPE_CASES = [
    pytest.param(BINARY, [], id="binary"),
    pytest.param(AUTOENCODER, [], id="autoencoder"),
    pytest.param(LOGIC, ["--model.num_neurons=40", "--model.group_sum_tau=4"], id="logic", marks=needs_lgn),
    # 2352 = 3 thresholds x 784 pixels: the recipe's in_features must match its data
    pytest.param(LOGIC_FMNIST, ["--model.num_neurons=40", "--model.group_sum_tau=4"], id="logic-fmnist", marks=needs_lgn),
]


@pytest.mark.parametrize("estimator", [None, "identity_st", "softmax_st", "gumbel_softmax_st"])  # None: the recipe's decoupled
@pytest.mark.parametrize("recipe,extra", RECIPE_CASES)
def test_recipe_runs_a_few_steps(recipe, extra, estimator, data_dir, fast_args, tmp_path):
    args = ["fit", "--config", recipe]
    if estimator:
        args += ["--config", os.path.join(RECIPES, "estimators", f"{estimator}.yaml")]
    args += fast_args(data_dir, str(tmp_path)) + extra
    cli = cli_main(args)
    assert cli.trainer.global_step == 3
    assert "val/loss" in cli.trainer.callback_metrics
    assert torch.isfinite(cli.trainer.callback_metrics["val/loss"])
    expected = estimator or "decoupled_st"
    assert cli.model.hparams.estimator == expected
    bottlenecks = list(cli.model.discrete_modules())
    assert bottlenecks and all(m.estimator == expected for m in bottlenecks)
    if expected == "decoupled_st":  # the recipe's temperatures reach every bottleneck
        tau_f = cli.config["fit"]["model"]["init_args"]["tau_f"]
        tau_b = cli.config["fit"]["model"]["init_args"]["tau_b"]
        assert all(float(m.tau_f) == pytest.approx(tau_f) and float(m.tau_b) == pytest.approx(tau_b) for m in bottlenecks)
    # the resolved config is saved with the run, and it names the estimator in use
    saved = yaml.safe_load(open(os.path.join(str(tmp_path), "config.yaml")))
    assert saved["model"]["init_args"]["estimator"] == expected
    # the recipe's monitors are there
    names = {type(c).__name__ for c in cli.trainer.callbacks}
    assert "LatentUtilizationMonitor" in names and "ModelCheckpoint" in names


def test_recipe_temperatures_are_the_papers():
    def model_args(path):
        return yaml.safe_load(open(path))["model"]["init_args"]

    b, a, g = model_args(BINARY), model_args(AUTOENCODER), model_args(LOGIC)
    assert (b["estimator"], b["tau_f"], b["tau_b"], b["hidden_dims"]) == ("decoupled_st", 0.1, 0.7, [200, 200])
    assert (a["tau_f"], a["tau_b"], a["num_latents"], a["num_categories"]) == (2.0, 0.5, 4, 8)
    assert (g["tau_f"], g["tau_b"], g["num_neurons"], g["num_layers"]) == (0.1, 2.0, 12000, 4)
    # the Fashion-MNIST logic-gate recipe is the CIFAR-10 one on other data
    f = model_args(LOGIC_FMNIST)
    assert {k: v for k, v in f.items() if k != "in_features"} == {k: v for k, v in g.items() if k != "in_features"}
    assert f["in_features"] == 3 * 28 * 28
    batch = {p: yaml.safe_load(open(p))["data"]["init_args"]["batch_size"] for p in (BINARY, AUTOENCODER, LOGIC)}
    assert batch == {BINARY: 128, AUTOENCODER: 200, LOGIC: 100}
    epochs = {p: yaml.safe_load(open(p))["trainer"].get("max_epochs") for p in (BINARY, AUTOENCODER)}
    assert epochs == {BINARY: 100, AUTOENCODER: 160}


@pytest.mark.parametrize(
    "recipe", [BINARY, AUTOENCODER, pytest.param(LOGIC, marks=needs_lgn)], ids=["binary", "autoencoder", "logic"]
)
def test_print_config_round_trips(recipe, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["fit", "--config", recipe, "--config", os.path.join(RECIPES, "estimators", "decoupled_st.yaml"),
                  "--config", os.path.join(RECIPES, "estimators", "softmax_st.yaml"), "--print_config"])
    assert e.value.code in (0, None)
    first = capsys.readouterr().out
    cfg = yaml.safe_load(first)
    # short class names were resolved to import paths
    assert "." in cfg["model"]["class_path"] and "." in cfg["data"]["class_path"]
    assert cfg["model"]["init_args"]["estimator"] == "softmax_st" and cfg["model"]["init_args"]["tau"] == 1.0
    path = tmp_path / "printed.yaml"
    path.write_text(first)
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(path), "--print_config"])
    second = capsys.readouterr().out
    assert yaml.safe_load(second) == cfg
    assert second == first


def test_optimizer_and_scheduler_from_command_line(tmp_path):
    cli = cli_main(
        ["--config", BINARY, "--model.optimizer=torch.optim.SGD", "--model.optimizer.lr=0.05",
         "--model.optimizer.momentum=0.9", "--model.lr_scheduler=torch.optim.lr_scheduler.StepLR",
         "--model.lr_scheduler.step_size=7", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"],
        run=False,
    )
    out = cli.model.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 0.05
    assert opt.param_groups[0]["momentum"] == 0.9
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR) and sched.step_size == 7


def test_recipe_optimizer_is_adam_1e3(tmp_path):
    cli = cli_main(["--config", BINARY, f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"],
                   run=False)
    opt = cli.model.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 1e-3


def _one_paragraph(msg: str) -> None:
    assert "\n" not in msg.strip() and "Traceback" not in msg and len(msg) < 1200


def test_unknown_estimator_is_a_config_error(tmp_path, capsys):
    with pytest.raises(ConfigError) as e:
        cli_main(["--config", BINARY, "--model.estimator=straight_through", f"--trainer.default_root_dir={tmp_path}"],
                 run=False)
    msg = str(e.value)
    _one_paragraph(msg)
    assert "unknown `estimator` 'straight_through'" in msg and "decoupled" in msg and "identity" in msg
    assert "--model.estimator=VALUE" in msg
    # the console script prints it and exits with status 2
    with pytest.raises(SystemExit) as e2:
        main(["fit", "--config", BINARY, "--model.estimator=straight_through"])
    assert e2.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: Invalid configuration: unknown `estimator`")


@pytest.mark.parametrize("key,value", [("tau_b", 0.0), ("tau_b", -0.5), ("tau_f", -1.0)])
def test_nonpositive_temperature_in_yaml_is_a_config_error(key, value, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model:\n  init_args:\n    {key}: {value}\n")
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", BINARY, "--config", str(bad), f"--trainer.default_root_dir={tmp_path}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    _one_paragraph(err)
    assert f"`{key}` must be a finite number" in err and f"got {value}" in err
    assert f"fix `{key}` in your YAML config (under `model: init_args:`)" in err and f"--model.{key}=VALUE" in err


@pytest.mark.parametrize(
    "extra,expected,hint",
    [
        (["--model.init_args.tua_f=1"], "Unknown argument `tua_f` of StochasticBinaryNetwork", "did you mean `tau_f`?"),
        (["--data.init_args.batchsize=3"], "Unknown argument `batchsize` of FashionMNISTDataModule",
         "did you mean `batch_size`?"),
        (["--trainer.max_epohcs=2"], "Unknown command-line argument `--trainer.max_epohcs=2`",
         "did you mean `--trainer.max_epochs`?"),
        (["--model.tau_f=abc"], "Invalid value for `tau_f` of StochasticBinaryNetwork", "expected float, got `abc`"),
    ],
    ids=["model-key", "data-key", "trainer-flag", "bad-type"],
)
def test_parse_errors_are_one_paragraph_with_a_suggestion(extra, expected, hint, tmp_path, capsys):
    # the parser's own error is a ~60-line usage dump; ours names the argument and the closest match
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", BINARY, f"--trainer.default_root_dir={tmp_path}"] + extra)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "usage:" not in err
    _one_paragraph(err)
    assert expected in err and hint in err


def test_unknown_yaml_key_names_the_closest_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epcohs: 3\n")
    with pytest.raises(ConfigError) as e:
        cli_main(["fit", "--config", BINARY, "--config", str(bad)])
    assert "Unknown configuration key `trainer.max_epcohs`; did you mean `trainer.max_epochs`?" in str(e.value)
    far = tmp_path / "far.yaml"
    far.write_text("model:\n  init_args:\n    zzzzzz: 1\n")
    with pytest.raises(ConfigError) as e:
        cli_main(["fit", "--config", BINARY, "--config", str(far)])
    assert "Unknown argument `zzzzzz`" in str(e.value) and "did you mean" not in str(e.value)


def test_missing_data_through_the_cli(fast_args, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", BINARY] + fast_args(str(tmp_path / "empty"), str(tmp_path)))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    _one_paragraph(err.replace("error: ", ""))
    assert "FashionMNIST not found" in err and "--data.download=true" in err and "import-idx" in err


def test_corrupt_idx_through_the_cli(make_mnist_layout, fast_args, tmp_path, capsys):
    make_mnist_layout(str(tmp_path), "FashionMNIST", n_train=40)
    path = os.path.join(str(tmp_path), "FashionMNIST", "raw", "train-labels-idx1-ubyte")
    with open(path, "ab") as fh:
        fh.write(b"\x00" * 7)  # longer than the header says
    with pytest.raises(DataError):
        cli_main(["fit", "--config", BINARY] + fast_args(str(tmp_path), str(tmp_path / "run")))
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", BINARY] + fast_args(str(tmp_path), str(tmp_path / "run")))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "train-labels-idx1-ubyte" in err and "is corrupt" in err and "48 bytes but it has 55" in err
    assert "import-idx" in err


def test_import_idx_subcommand_then_fit(make_idx_files, fast_args, tmp_path, capsys):
    src = tmp_path / "offline"
    make_idx_files(str(src), n_train=40, n_test=16, gz=True)
    main(["import-idx", str(src), str(tmp_path / "data"), "--dataset", "FashionMNIST"])
    assert "imported FashionMNIST" in capsys.readouterr().out
    cli = cli_main(["fit", "--config", BINARY] + fast_args(str(tmp_path / "data"), str(tmp_path / "run")))
    assert cli.trainer.global_step == 3


def test_help_lists_the_extra_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("fit", "validate", "test", "predict", "sweep", "import-idx"):
        assert word in out


def test_validate_and_test_subcommands(data_dir, fast_args, tmp_path):
    base = ["--config", BINARY] + fast_args(data_dir, str(tmp_path))
    cli = cli_main(["validate"] + base + ["--trainer.limit_test_batches=2"])
    assert "val/loss" in cli.trainer.callback_metrics
    cli = cli_main(["test"] + base + ["--trainer.limit_test_batches=2"])
    assert "test/loss" in cli.trainer.callback_metrics and "test/acc" in cli.trainer.callback_metrics


def test_every_recipe_file_is_covered():
    found = {os.path.relpath(p, RECIPES) for p in glob.glob(os.path.join(RECIPES, "**", "*.yaml"), recursive=True)}
    covered = {os.path.relpath(p, RECIPES) for p in (BINARY, AUTOENCODER, LOGIC, LOGIC_FMNIST, QUICKSTART)} | {
        os.path.join("estimators", f"{e}.yaml") for e in ESTIMATORS if e
    }
    # run by tests/test_vae.py::test_recipe_fits_and_tests_the_bound
    covered |= {"vae_mnist.yaml", "vae_mnist_bernoulli.yaml", "structured_prediction_mnist.yaml", "constant_temperature.yaml",
                "anneal_tau_b.yaml"}
    # run by tests/test_adaptive.py::test_adaptive_recipes_build_and_run
    covered |= {"binary_fashion_mnist_adaptive.yaml", "autoencoder_mnist_adaptive.yaml"}
    covered |= {os.path.join("estimators", f"{e}.yaml") for e in ("gumbel_softmax", "reinforce", "reinmax", "gumbel_rao")}
    assert found == covered


def test_cli_progress_bar_redraws_every_ten_steps(tmp_path):
    from lightning.pytorch.callbacks import TQDMProgressBar

    from lightning_discrete.cli import PROGRESS_REFRESH_RATE, cli_main

    args = ["--config", "recipes/quickstart.yaml", "--data.dataset=digits", f"--trainer.default_root_dir={tmp_path}"]
    bars = [cb for cb in cli_main(args, run=False).trainer.callbacks if isinstance(cb, TQDMProgressBar)]
    assert len(bars) == 1 and bars[0].refresh_rate == PROGRESS_REFRESH_RATE == 10
    # a progress bar of the user's own wins, and turning the bar off is respected
    own = cli_main(args + ["--trainer.callbacks+=TQDMProgressBar", "--trainer.callbacks.refresh_rate=3"], run=False)
    assert [cb.refresh_rate for cb in own.trainer.callbacks if isinstance(cb, TQDMProgressBar)] == [3]
    off = cli_main(args + ["--trainer.enable_progress_bar=false"], run=False)
    assert off.trainer.progress_bar_callback is None


# ------------------------------------------------------------------------------------- #
# loggers: CSV always, TensorBoard when installed, unless the config sets trainer.logger
# ------------------------------------------------------------------------------------- #
def _quick_args(tmp_path, *extra):
    return ["--config", QUICKSTART, "--data.dataset=digits", f"--trainer.default_root_dir={tmp_path}", *extra]


def test_runs_log_to_csv_and_tensorboard_in_one_folder(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    pytest.importorskip("tensorboard")
    cli = cli_main(["fit", *_quick_args(tmp_path, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                                        "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false")])
    loggers = cli.trainer.loggers
    assert [type(lg) for lg in loggers] == [CSVLogger, TensorBoardLogger]
    assert loggers[0].log_dir == loggers[1].log_dir == cli.trainer.log_dir
    assert cli.trainer.log_dir.startswith(str(tmp_path))
    files = os.listdir(cli.trainer.log_dir)
    assert "metrics.csv" in files and any(f.startswith("events.out.tfevents") for f in files)
    # a second run gets the next version folder, again one for both loggers
    again = cli_main(_quick_args(tmp_path), run=False).trainer.loggers
    assert again[0].version == again[1].version == loggers[0].version + 1


def test_without_tensorboard_runs_log_to_csv_only(tmp_path, monkeypatch):
    import sys

    from lightning.pytorch.loggers import CSVLogger

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # not importable
    loggers = cli_main(_quick_args(tmp_path), run=False).trainer.loggers
    assert [type(lg) for lg in loggers] == [CSVLogger]


def test_a_logger_set_in_the_config_is_kept(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    own = cli_main(_quick_args(tmp_path, "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}/own"),
                   run=False).trainer.loggers
    assert [type(lg) for lg in own] == [CSVLogger] and own[0].save_dir == f"{tmp_path}/own"
    assert cli_main(_quick_args(tmp_path, "--trainer.logger=false"), run=False).trainer.loggers == []


@pytest.mark.timeout(300)
def test_a_fit_stopped_by_sigterm_exits_non_zero(tmp_path):
    # Lightning ends a fit gracefully on SIGTERM, with exit status 0: lightning-discrete turns that
    # into 143, so that a runner or scheduler does not store the run as finished
    import signal
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightning_discrete", "fit", "--config", os.path.join(root, "recipes", "quickstart.yaml"),
         "--trainer.max_epochs=100000", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
         "--trainer.enable_progress_bar=false"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not glob.glob(str(tmp_path / "**" / "latest.ckpt"), recursive=True) and proc.poll() is None:
            assert time.monotonic() < deadline, "no epoch finished in 240 s"
            time.sleep(0.5)
        assert proc.poll() is None  # still training
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "stopped by SIGTERM" in err

"""AdaptiveTemperature: the rules on controlled readings, and the callback in real Trainer runs."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from lightning.pytorch import Callback, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_discrete.callbacks import (
    ActiveUnitMonitor,
    AdaptiveTemperature,
    GradientSNRMonitor,
    LatentUtilizationMonitor,
    TemperatureScheduler,
    adapt_temperature,
)
from lightning_discrete.nn import DiscreteBottleneck

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")


def _monitors():
    return [LatentUtilizationMonitor(stages="train"), ActiveUnitMonitor(), GradientSNRMonitor(mode="window", window=2)]


class _EpochStartTemperatures(Callback):
    """``rows[epoch] = {layer: (tau_f, tau_b)}`` read from the bottlenecks when each epoch starts."""

    def __init__(self) -> None:
        self.rows = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.rows[trainer.current_epoch] = {
            name: m.temperatures() for name, m in pl_module.named_modules() if isinstance(m, DiscreteBottleneck)
        }


# --------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("measured,direction", [(0.2, 1), (0.5, 1), (0.9, -1), (1.0, -1)])
def test_tau_f_moves_toward_the_utilization_target(measured, direction):
    cb = AdaptiveTemperature(target_utilization=0.7, target_active=None, snr_floor=None, warmup=0)
    cb.start({"z": (1.0, 0.5)})
    assert cb.step(0, {"z": {"utilization": measured}})
    tau_f, tau_b = cb.temperatures["z"]
    assert (tau_f > 1.0) if direction > 0 else (tau_f < 1.0)
    assert tau_b == 0.5  # no target: tau_b is left alone


@pytest.mark.parametrize("measured,direction", [(0.05, 1), (0.6, -1)])
def test_tau_b_moves_toward_the_active_target(measured, direction):
    cb = AdaptiveTemperature(target_utilization=None, target_active=0.3, grad_norm_floor=None, snr_floor=None, warmup=0)
    cb.start({"z": (1.0, 0.5)})
    cb.step(0, {"z": {"active": measured}})
    assert (cb.temperatures["z"][1] > 0.5) if direction > 0 else (cb.temperatures["z"][1] < 0.5)


def test_step_is_proportional_and_capped():
    small = adapt_temperature(1.0, measured=0.78, target=0.8, gain=1.0, max_log_step=0.1)
    big = adapt_temperature(1.0, measured=0.0, target=0.8, gain=1.0, max_log_step=0.1)
    assert math.log(small) == pytest.approx(0.02)
    assert math.log(big) == pytest.approx(0.1)


def test_bounds_are_respected():
    cb = AdaptiveTemperature(target_utilization=1.0, target_active=0.0, snr_floor=None, grad_norm_floor=None,
                             tau_f_bounds=(0.2, 1.5), tau_b_bounds=(0.3, 2.0), max_log_step=0.5, warmup=0)
    cb.start({"z": (10.0, 0.01)})  # outside the bounds: clamped at the start
    assert cb.temperatures["z"] == (1.5, 0.3)
    cb.start({"z": (1.0, 1.0)})
    for epoch in range(20):
        cb.step(epoch, {"z": {"utilization": 0.0, "active": 1.0}})  # push tau_f up and tau_b down
    assert cb.temperatures["z"] == (1.5, 0.3)


def test_warmup_and_interval():
    cb = AdaptiveTemperature(target_utilization=0.9, target_active=None, snr_floor=None, warmup=2, interval=2,
                             smoothing=0.0)
    cb.start({"z": (1.0, 1.0)})
    history = []
    for epoch in range(7):
        updated = cb.step(epoch, {"z": {"utilization": 0.0 if epoch < 2 else 0.5}})
        history.append((updated, cb.temperatures["z"][0]))
    assert [u for u, _ in history] == [False, False, False, True, False, True, False]
    taus = [t for _, t in history]
    assert taus[:3] == [1.0, 1.0, 1.0] and taus[3] > 1.0 and taus[4] == taus[3] and taus[5] > taus[4]
    # the warm-up readings (0.0) never entered the smoothing
    assert cb.smoothed["z"]["utilization"] == 0.5


def test_smoothing_averages_the_readings():
    cb = AdaptiveTemperature(target_utilization=0.5, target_active=None, snr_floor=None, warmup=0, smoothing=0.75)
    cb.start({"z": (1.0, 1.0)})
    cb.step(0, {"z": {"utilization": 0.2}})
    cb.step(1, {"z": {"utilization": 1.0}})
    assert cb.smoothed["z"]["utilization"] == pytest.approx(0.75 * 0.2 + 0.25 * 1.0)


@pytest.mark.parametrize("snr", [0.01, None])
def test_snr_floor_blocks_raising_tau_f(snr):
    cb = AdaptiveTemperature(target_utilization=0.9, target_active=None, snr_floor=0.05, warmup=0)
    cb.start({"z": (1.0, 1.0)})
    cb.step(0, {"z": {"utilization": 0.1}}, snr=snr)
    assert cb.temperatures["z"][0] == 1.0
    cb.step(1, {"z": {"utilization": 0.1}}, snr=0.06)  # above the floor: it rises
    assert cb.temperatures["z"][0] > 1.0
    high = AdaptiveTemperature(target_utilization=0.2, target_active=None, snr_floor=0.05, warmup=0)
    high.start({"z": (1.0, 1.0)})
    high.step(0, {"z": {"utilization": 0.9}}, snr=snr)  # lowering is never blocked
    assert high.temperatures["z"][0] < 1.0


@pytest.mark.parametrize("grad_norm", [1e-6, None])
def test_grad_norm_floor_blocks_raising_tau_b(grad_norm):
    cb = AdaptiveTemperature(target_utilization=None, target_active=0.5, snr_floor=None, grad_norm_floor=1e-3, warmup=0)
    cb.start({"z": (1.0, 1.0)})
    cb.step(0, {"z": {"active": 0.1}}, grad_norm=grad_norm)
    assert cb.temperatures["z"][1] == 1.0
    cb.step(1, {"z": {"active": 0.1}}, grad_norm=1e-2)
    assert cb.temperatures["z"][1] > 1.0


def test_layers_are_independent():
    cb = AdaptiveTemperature(target_utilization=0.5, target_active=0.3, snr_floor=None, grad_norm_floor=None, warmup=0)
    cb.start({"a": (1.0, 1.0), "b": (1.0, 1.0), "c": (1.0, 1.0)})
    cb.step(0, {"a": {"utilization": 0.1, "active": 0.9}, "b": {"utilization": 0.9, "active": 0.1}, "c": {}})
    (fa, ba), (fb, bb), (fc, bc) = cb.temperatures["a"], cb.temperatures["b"], cb.temperatures["c"]
    assert fa > 1.0 > fb and ba < 1.0 < bb
    assert (fc, bc) == (1.0, 1.0)  # no reading: held


def test_state_round_trip_continues_identically(tmp_path):
    def readings(epoch):
        return {"a": {"utilization": 0.3 + 0.05 * epoch, "active": 0.5 - 0.03 * epoch},
                "b": {"utilization": 0.9 - 0.04 * epoch, "active": 0.1 + 0.02 * epoch}}

    def make():
        cb = AdaptiveTemperature(target_utilization=0.6, target_active=0.3, warmup=1, smoothing=0.6)
        return cb

    straight = make()
    straight.start({"a": (0.3, 0.7), "b": (1.3, 0.9)})
    for epoch in range(8):
        straight.step(epoch, readings(epoch), snr=0.1, grad_norm=0.5)

    first = make()
    first.start({"a": (0.3, 0.7), "b": (1.3, 0.9)})
    for epoch in range(4):
        first.step(epoch, readings(epoch), snr=0.1, grad_norm=0.5)
    torch.save({"cb": first.state_dict()}, tmp_path / "state.ckpt")
    resumed = make()
    resumed.load_state_dict(torch.load(tmp_path / "state.ckpt", weights_only=False)["cb"])
    assert resumed.temperatures == first.temperatures and resumed.smoothed == first.smoothed
    for epoch in range(4, 8):
        resumed.step(epoch, readings(epoch), snr=0.1, grad_norm=0.5)
    assert resumed.temperatures == straight.temperatures  # exactly: the same floats
    assert resumed.temperatures != first.temperatures  # and they did move after the resume


def test_bad_arguments():
    with pytest.raises(ValueError, match="target_utilization"):
        AdaptiveTemperature(target_utilization=85)
    with pytest.raises(ValueError, match="tau_f_bounds"):
        AdaptiveTemperature(tau_f_bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="at least one"):
        AdaptiveTemperature(target_utilization=None, target_active=None)
    with pytest.raises(ValueError, match="start"):
        AdaptiveTemperature().step(0, {"z": {"utilization": 0.5}})
    # a NaN measurement or target must not become the temperature
    with pytest.raises(ValueError, match="finite"):
        adapt_temperature(1.0, measured=float("nan"), target=0.8)
    with pytest.raises(ValueError, match="finite"):
        adapt_temperature(1.0, measured=0.5, target=float("nan"))
    with pytest.raises(ValueError, match="gain"):
        AdaptiveTemperature(gain=float("nan"))


# --------------------------------------------------------------------------- in a Trainer
def test_real_run_raises_tau_f_and_logs_what_is_set(make_trainer, tiny_binary_net, classification_data, loader):
    seed_everything(0)
    model = tiny_binary_net(tau_f=0.1, tau_b=0.5)
    adaptive = AdaptiveTemperature(target_utilization=0.99, target_active=None, snr_floor=None, warmup=0)
    monitors = _monitors()
    trainer = make_trainer(max_epochs=4, callbacks=[*monitors, adaptive])
    trainer.fit(model, loader(classification_data(32), 8))
    names = ["hidden.1", "hidden.3"]
    utilization = [(monitors[0].last_results[f"train/perplexity/{n}"] - 1.0) for n in names]
    assert all(u < 0.99 for u in utilization)  # below the target ...
    metrics = trainer.callback_metrics
    for name in names:
        tau_f, tau_b = dict(model.named_modules())[name].temperatures()
        assert tau_f > 0.1 and tau_b == 0.5  # ... so tau_f rose; tau_b has no target
        assert adaptive.temperatures[name] == (tau_f, tau_b)
        assert float(metrics[f"temperature/{name}/tau_f"]) == pytest.approx(tau_f, rel=1e-6)
        assert float(metrics[f"temperature/{name}/tau_b"]) == pytest.approx(tau_b, rel=1e-6)
        assert f"adaptive/{name}/utilization" in metrics


def test_resume_restores_the_temperatures_exactly(tmp_path, make_trainer, tiny_binary_net, classification_data, loader):
    seed_everything(0)
    kw = dict(target_utilization=0.99, target_active=0.6, snr_floor=None, grad_norm_floor=None, warmup=0)
    first = AdaptiveTemperature(**kw)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = make_trainer(max_epochs=2, callbacks=[*_monitors(), first, ckpt], enable_checkpointing=True)
    trainer.fit(tiny_binary_net(tau_f=0.1, tau_b=0.5), loader(classification_data(32), 8))
    saved = dict(first.temperatures)
    assert all(f != 0.1 and b != 0.5 for f, b in saved.values())

    second = AdaptiveTemperature(**kw)
    recorder = _EpochStartTemperatures()
    trainer = make_trainer(max_epochs=3, enable_checkpointing=True,
                           callbacks=[*_monitors(), second, recorder, ModelCheckpoint(dirpath=tmp_path / "2", save_last=True)])
    model = tiny_binary_net(tau_f=1.0, tau_b=1.0)  # other temperatures: the checkpoint's must win
    trainer.fit(model, loader(classification_data(32), 8), ckpt_path=str(tmp_path / "last.ckpt"))
    assert recorder.rows[2] == saved  # exactly the floats the first run had set


def test_temperature_scheduler_conflicts(make_trainer, tiny_binary_net, classification_data, loader):
    trainer = make_trainer(max_epochs=1, callbacks=[*_monitors(), TemperatureScheduler(tau_f=0.5), AdaptiveTemperature()])
    with pytest.raises(ValueError, match="TemperatureScheduler"):
        trainer.fit(tiny_binary_net(), loader(classification_data(16), 8))


@pytest.mark.parametrize(
    "callbacks,match",
    [
        (lambda: [ActiveUnitMonitor(), GradientSNRMonitor(mode="window"), AdaptiveTemperature()], "LatentUtilizationMonitor"),
        (lambda: [LatentUtilizationMonitor(stages="val"), ActiveUnitMonitor(), GradientSNRMonitor(), AdaptiveTemperature()],
         "LatentUtilizationMonitor"),
        (lambda: [LatentUtilizationMonitor(), ActiveUnitMonitor(), AdaptiveTemperature()], "GradientSNRMonitor"),
        (lambda: [AdaptiveTemperature(), *_monitors()], "after"),
    ],
    ids=["no-utilization", "val-only", "no-snr", "order"],
)
def test_missing_or_misplaced_monitor(callbacks, match, make_trainer, tiny_binary_net, classification_data, loader):
    trainer = make_trainer(max_epochs=1, callbacks=callbacks())
    with pytest.raises(ValueError, match=match):
        trainer.fit(tiny_binary_net(), loader(classification_data(16), 8))


def test_single_temperature_estimator_is_refused(make_trainer, tiny_binary_net, classification_data, loader):
    trainer = make_trainer(max_epochs=1, callbacks=[*_monitors(), AdaptiveTemperature()])
    with pytest.raises(ValueError, match="decoupled_st"):
        trainer.fit(tiny_binary_net(estimator="softmax_st", tau_f=None, tau_b=None, tau=1.0),
                    loader(classification_data(16), 8))


@pytest.mark.timeout(180)
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_ddp_ranks_end_with_identical_temperatures(tmp_path, free_master_port, make_trainer, tiny_binary_net,
                                                   classification_data, loader, rank_temperatures):
    seed_everything(0)
    adaptive = AdaptiveTemperature(target_utilization=0.99, target_active=0.6, snr_floor=None, grad_norm_floor=None,
                                   warmup=0)
    trainer = make_trainer(max_epochs=3, devices=2, strategy="ddp_spawn",
                           callbacks=[*_monitors(), adaptive, rank_temperatures(str(tmp_path))])
    trainer.fit(tiny_binary_net(tau_f=0.1, tau_b=0.5), loader(classification_data(32), 4))
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    assert set(ranks[0]) == {"hidden.1", "hidden.3"}
    assert all(f > 0.1 and b != 0.5 for f, b in ranks[0].values())  # they moved, in step on both ranks


# --------------------------------------------------------------------------- recipes
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, make_mnist_layout):
    root = tmp_path_factory.mktemp("data")
    make_mnist_layout(str(root), "FashionMNIST", n_train=40, n_test=16)
    make_mnist_layout(str(root), "MNIST", n_train=40, n_test=16)
    return str(root)


@pytest.mark.parametrize("base", ["binary_fashion_mnist", "autoencoder_mnist"])
def test_adaptive_recipes_build_and_run(base, data_dir, fast_args, tmp_path):
    pytest.importorskip("torchvision")
    from lightning_discrete.cli import cli_main

    args = ["fit", "--config", os.path.join(RECIPES, f"{base}.yaml"),
            "--config", os.path.join(RECIPES, f"{base}_adaptive.yaml")]
    cli = cli_main(args + fast_args(data_dir, str(tmp_path)) + ["--trainer.max_epochs=2"])
    callbacks = list(cli.trainer.callbacks)
    (adaptive,) = [c for c in callbacks if isinstance(c, AdaptiveTemperature)]
    kinds = (LatentUtilizationMonitor, ActiveUnitMonitor, GradientSNRMonitor)
    assert all(any(isinstance(c, k) for c in callbacks[: callbacks.index(adaptive)]) for k in kinds)
    assert any(isinstance(c, ModelCheckpoint) for c in callbacks)
    assert not any(isinstance(c, TemperatureScheduler) for c in callbacks)
    bottlenecks = [n for n, m in cli.model.named_modules() if isinstance(m, DiscreteBottleneck)]
    assert set(adaptive.temperatures) == set(bottlenecks)
    for name in bottlenecks:
        assert f"temperature/{name}/tau_f" in cli.trainer.callback_metrics

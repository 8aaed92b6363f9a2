import math
import os
import sys
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.precision import Precision
from torch.utils.data import TensorDataset

from lightning_discrete.callbacks import (
    ActiveUnitMonitor,
    CPUThreads,
    GateUsageMonitor,
    GradientSNRMonitor,
    LatentUtilizationMonitor,
    TemperatureScheduler,
    TrainingSummary,
    gate_usage_figure,
    snr_statistics,
    training_curves_figure,
)
from lightning_discrete.metrics import perplexity_from_counts
from lightning_discrete.nn.logic import GATE_NAMES


def _checkpoints(tmp_path, **kw):
    return ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, filename="{step}", **kw)


# --------------------------------------------------------------------------- utilisation
def test_val_perplexity_matches_argmax_codes_by_hand(make_trainer, tiny_autoencoder, binary_images, loader):
    seed_everything(0)
    model = tiny_autoencoder()
    data = binary_images(40)
    mon = LatentUtilizationMonitor(stages=("val",))
    trainer = make_trainer(callbacks=[mon])
    trainer.validate(model, loader(data, 8), verbose=False)
    with torch.no_grad():
        codes = model.encode(data.tensors[0]).argmax(-1)  # (N, 2)
    counts = torch.stack([torch.bincount(codes[:, l], minlength=4) for l in range(2)])
    expected = float(perplexity_from_counts(counts).mean())
    joint = torch.bincount(codes[:, 0] + 4 * codes[:, 1], minlength=16)
    got = trainer.callback_metrics
    assert float(got["val/perplexity/bottleneck"]) == pytest.approx(expected, rel=1e-6)
    assert float(got["val/dead_codes/bottleneck"]) == pytest.approx(float((counts == 0).double().mean()))
    assert float(got["val/joint_perplexity/bottleneck"]) == pytest.approx(float(perplexity_from_counts(joint)), rel=1e-6)
    assert float(got["val/joint_used/bottleneck"]) == int((joint > 0).sum())
    # recording is switched off again afterwards
    assert model.bottleneck.last_indices is None
    model(data.tensors[0][:4])
    assert model.bottleneck.last_indices is None


def test_train_utilization_names_every_bottleneck(make_trainer, tiny_binary_net, classification_data, loader):
    seed_everything(0)
    mon = LatentUtilizationMonitor(stages="train")
    trainer = make_trainer(max_epochs=1, callbacks=[mon])
    trainer.fit(tiny_binary_net(), loader(classification_data(32), 8))
    names = {k for k in trainer.callback_metrics if k.count("/") == 2}
    assert names == {f"train/{stat}/hidden.{i}" for stat in ("perplexity", "dead_codes", "joint_perplexity", "joint_used")
                     for i in (1, 3)}  # 2**6 joint codes: tracked


def _halves(n=32):
    """Rows whose first and second halves use different codes (their perplexities differ)."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(n // 2, 8, generator=g) * 3, torch.randn(n // 2, 8, generator=g) * 0.05])
    return x


def test_utilization_two_monitors_resume_mid_epoch_counts_the_whole_epoch(tmp_path, make_trainer, tiny_autoencoder, loader):
    """A checkpoint in the middle of an epoch keeps the counts so far: resumed on the
    epoch's remaining batches, the epoch's statistics equal an uninterrupted run's."""
    x = _halves()

    def run(data, ckpt_path=None):
        seed_everything(0)
        model = tiny_autoencoder(tau_f=0.0)  # argmax codes: a function of the weights
        monitors = [LatentUtilizationMonitor(stages="train"), LatentUtilizationMonitor(stages="val")]
        trainer = make_trainer(max_epochs=1, callbacks=[*monitors, _checkpoints(tmp_path, every_n_train_steps=2)],
                               enable_checkpointing=True)
        trainer.fit(model, loader(TensorDataset(data), 8), loader(TensorDataset(x), 8), ckpt_path=ckpt_path)
        return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/") and k.count("/") == 2}

    full = run(x)
    # Lightning restarts a plain DataLoader at its first batch: give the resumed run the
    # epoch's last two batches first
    resumed = run(torch.cat([x[16:], x[:16]]), ckpt_path=str(tmp_path / "step=2.ckpt"))
    assert resumed == pytest.approx(full, rel=1e-12)
    # the property is not trivial: the second half alone has another perplexity
    seed_everything(0)
    half = run(torch.cat([x[16:], x[:16]])[:16])
    assert half["train/perplexity/bottleneck"] != pytest.approx(full["train/perplexity/bottleneck"], rel=1e-3)


class _CodeRecorder(Callback):
    """Records ``(global_step, last_indices)`` of the bottleneck at every training batch (its own
    record request: another monitor recording on the steps a strided one skips)."""

    def __init__(self) -> None:
        self.rows = []

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.bottleneck.record(True, owner=self)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.rows.append((trainer.global_step, pl_module.bottleneck.last_indices))


@pytest.mark.parametrize("stride, accumulate, counted", [(3, 1, 2), (2, 2, 4)])
def test_utilization_stride_counts_only_the_sampled_steps(stride, accumulate, counted, make_trainer, tiny_autoencoder,
                                                          loader):
    """With ``stride`` the epoch's training statistics are those of the codes of optimizer steps
    0, stride, 2 * stride, ... alone (every micro-batch of a sampled step), although another
    monitor records every step."""
    x = _halves(48)  # 6 batches of 8
    seed_everything(0)
    model = tiny_autoencoder(tau_f=0.0)  # argmax codes
    recorder = _CodeRecorder()
    mon = LatentUtilizationMonitor(stages="train", stride=stride)
    trainer = make_trainer(max_epochs=1, callbacks=[recorder, mon], accumulate_grad_batches=accumulate)
    trainer.fit(model, loader(TensorDataset(x), 8))
    assert len(recorder.rows) == 6
    # the recorder's hook ran after the optimizer step of the batch that completes one:
    # its global_step is one ahead there, so the step of each batch is counted from the batch index
    steps = [b // accumulate for b in range(6)]

    def perplexity(rows):
        codes = torch.cat(rows)
        counts = torch.stack([torch.bincount(codes[:, l], minlength=4) for l in range(2)])
        return float(perplexity_from_counts(counts).mean())

    sampled = [codes for s, (_, codes) in zip(steps, recorder.rows) if s % stride == 0]
    assert len(sampled) == counted  # steps 0 and 3 of 6; steps 0 and 2 of 3 (2 batches each)
    got = float(trainer.callback_metrics["train/perplexity/bottleneck"])  # logged in float32
    assert got == pytest.approx(perplexity(sampled), rel=1e-6)
    assert got != pytest.approx(perplexity([codes for _, codes in recorder.rows]), rel=1e-3)  # not every step
    with pytest.raises(ValueError, match="stride"):
        LatentUtilizationMonitor(stride=0)


@pytest.mark.parametrize("monitor", [lambda: LatentUtilizationMonitor(), lambda: ActiveUnitMonitor()])
def test_a_fit_that_raises_leaves_the_bottlenecks_not_recording(monitor, make_trainer, tiny_autoencoder, binary_images,
                                                                 loader, raise_before_backward):
    model = tiny_autoencoder()
    with pytest.raises(RuntimeError, match="boom"):
        make_trainer(max_steps=2, callbacks=[monitor(), raise_before_backward()]).fit(model, loader(binary_images()))
    model(binary_images().tensors[0][:4])
    assert model.bottleneck.last_indices is None and model.bottleneck.last_logit_grad is None


# --------------------------------------------------------------------------- gradient SNR
def _fake_trainer():
    return SimpleNamespace(
        world_size=1,
        global_rank=0,
        precision_plugin=Precision(),
        strategy=SimpleNamespace(reduce=lambda t, reduce_op: t),
    )


def test_probe_snr_matches_analytic(noisy_linear_model):
    c = torch.linspace(0.25, 2.0, 40)
    sigma = 0.5
    model = noisy_linear_model(c, sigma)
    mon = GradientSNRMonitor(num_samples=512, seed=3)
    stats = mon.probe(_fake_trainer(), model, batch=torch.zeros(1))
    analytic = c / sigma  # per-element SNR
    # sampling error of |mean|/std with K = 512 is ~ 1/sqrt(2K) relative (3%) per element
    assert stats["mean"] == pytest.approx(float(analytic.mean()), rel=0.03)
    assert stats["median"] == pytest.approx(float(analytic.median()), rel=0.06)
    assert stats["w/mean"] == stats["mean"]
    assert stats["grad_norm"] == pytest.approx(float(c.norm()), rel=0.02)


def test_snr_statistics_exact():
    x = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]], dtype=torch.float64)  # 2 samples, 3 elements
    s = snr_statistics(x.sum(0), (x * x).sum(0), 2, [2, 1], ["a", "b"])
    # element 0: mean 2, std sqrt(2); element 1 and 2 never vary -> excluded
    assert s["mean"] == pytest.approx(2 / math.sqrt(2)) and s["a/mean"] == s["mean"]
    assert math.isnan(s["b/mean"])


def test_probe_leaves_grad_params_and_rng_untouched(tiny_binary_net, classification_data):
    seed_everything(0)
    model = tiny_binary_net()
    x, y = classification_data(8).tensors
    loss = model.compute_loss((x, y))[0]
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    params = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    stats = GradientSNRMonitor(num_samples=8).probe(_fake_trainer(), model, (x, y))
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert math.isfinite(stats["mean"]) and set(stats) >= {"hidden.0.weight/mean", "head.bias/median"}


def test_probe_does_not_change_training_trajectory(make_trainer, tiny_binary_net, classification_data, loader):
    def train(callbacks):
        seed_everything(1)
        model = tiny_binary_net()
        trainer = make_trainer(max_epochs=2, callbacks=callbacks)
        trainer.fit(model, loader(classification_data(32), 8))
        opt = trainer.optimizers[0].state_dict()["state"]
        return [p.detach().clone() for p in model.parameters()], opt, trainer

    base, opt_base, _ = train([])
    probed, opt_probed, trainer = train([GradientSNRMonitor(every_n_steps=2, num_samples=4)])
    assert math.isfinite(float(trainer.callback_metrics["grad_snr/mean"]))
    assert all(torch.equal(a, b) for a, b in zip(base, probed))
    for k in opt_base:
        assert torch.equal(opt_base[k]["exp_avg"], opt_probed[k]["exp_avg"])
        assert torch.equal(opt_base[k]["exp_avg_sq"], opt_probed[k]["exp_avg_sq"])


@pytest.mark.parametrize("accumulate", [1, 2])
def test_window_snr_matches_analytic(accumulate, make_trainer, noisy_linear_model, classification_data, loader):
    """Step gradients are means of ``accumulate`` micro-batch gradients: SNR x sqrt(accumulate)."""
    seed_everything(0)
    c = torch.linspace(0.25, 2.0, 40)
    mon = GradientSNRMonitor(mode="window", window=200)
    data = loader(classification_data(200 * accumulate), 1)
    make_trainer(max_epochs=1, callbacks=[mon], accumulate_grad_batches=accumulate).fit(noisy_linear_model(c, 1.0), data)
    assert mon.last_results["mean"] == pytest.approx(float(c.mean()) * math.sqrt(accumulate), rel=0.06)


@pytest.mark.parametrize("dtype, offset, steps", [(torch.float32, 1000.0, 50), (torch.bfloat16, 0.3, 200)])
def test_window_snr_accurate_when_mean_dwarfs_noise(dtype, offset, steps):
    """float32 gradients ``1000 + N(0, 1)``: float32 sums of g and g**2 would lose the variance
    to cancellation; bfloat16 gradients ``0.3 + N(0, 1)``: bfloat16 sums over 200 steps would
    keep about three digits. The window's sums must match a float64 computation."""
    torch.manual_seed(0)
    draws = offset + torch.randn(steps, 3, dtype=torch.float64)

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3, dtype=dtype))
            self.logged = {}

        def log(self, name, value, **kwargs):
            self.logged[name] = float(value)

    module = Holder()
    mon = GradientSNRMonitor(mode="window", window=steps, per_layer=False)
    for g in draws:
        module.w.grad = g.to(dtype)
        mon.on_before_optimizer_step(SimpleNamespace(global_step=0), module, None)
    seen = draws.to(dtype).to(torch.float64)  # what the monitor saw
    expected = (seen.mean(0).abs() / seen.std(0)).mean()
    assert module.logged["grad_snr_window/mean"] == pytest.approx(float(expected), rel=1e-4)


def test_window_snr_stride_samples_every_kth_step(make_trainer, noisy_linear_model, classification_data, loader):
    """``stride=2``: a window of 100 samples needs 200 steps, and its SNR is the same."""
    c = torch.linspace(0.25, 2.0, 40)
    for steps, logged in ((198, False), (200, True)):
        seed_everything(0)
        mon = GradientSNRMonitor(mode="window", window=100, stride=2)
        make_trainer(max_epochs=1, callbacks=[mon]).fit(noisy_linear_model(c, 1.0), loader(classification_data(steps), 1))
        assert bool(mon.last_results) is logged
    assert mon.last_results["mean"] == pytest.approx(float(c.mean()), rel=0.08)
    with pytest.raises(ValueError, match="stride"):
        GradientSNRMonitor(mode="window", stride=0)


def test_snr_two_monitors_resume_keep_probe_batch_and_window(tmp_path, make_trainer, tiny_binary_net, classification_data, loader):
    """Probe and window monitors in one Trainer; resumed mid-epoch at step 2, the probe
    uses the first run's batch (it logs what the uninterrupted run logs at step 2) and the
    window counts the 2 gradients sampled before the checkpoint (the resumed run alone
    sees 1 step, too few for a window of 3)."""
    data = classification_data(24)
    rotated = TensorDataset(*(torch.cat([t[16:], t[:16]]) for t in data.tensors))  # batch 2 first

    def run(ds, ckpt_path=None):
        seed_everything(0)
        probe = GradientSNRMonitor(every_n_steps=2, num_samples=4)
        window = GradientSNRMonitor(mode="window", window=3)
        trainer = make_trainer(max_epochs=1, callbacks=[probe, window, _checkpoints(tmp_path, every_n_train_steps=2)],
                               enable_checkpointing=True)
        trainer.fit(tiny_binary_net(), loader(ds, 8), ckpt_path=ckpt_path)  # 3 steps: probes at 0 and 2
        return probe.last_results, window.last_results

    probe_full, window_full = run(data)
    probe_res, window_res = run(rotated, ckpt_path=str(tmp_path / "step=2.ckpt"))
    assert probe_res == pytest.approx(probe_full, rel=1e-6)
    assert window_full and set(window_res) == set(window_full)
    # not by chance: probing the resumed run's own first batch gives other values
    seed_everything(0)
    probe_other, _ = run(rotated)
    assert probe_other["mean"] != pytest.approx(probe_full["mean"], rel=1e-3)


# --------------------------------------------------------------------------- active units
@pytest.mark.parametrize("accumulate, precision, batch", [(1, "32-true", 8), (2, "32-true", 4), (1, "bf16-mixed", 16)])
def test_active_units_exact_on_known_gradients(accumulate, precision, batch, make_trainer, known_logit_grad_model,
                                               classification_data, loader):
    logits = torch.tensor([-8.0, -6.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.5, 5.0, 7.0])
    weights = torch.tensor([1.0, -1.0, 2.0, 0.5, 1.0, -1.0, 1.0, 1.0, 1.5, 1.0])
    model = known_logit_grad_model(logits, weights, tau_b=1.0)
    thr = 0.02
    g = model.per_example_logit_grad(1.0)
    assert ((g.abs() - thr).abs() > 0.003).all()  # nowhere near the threshold
    expected = 100.0 * float((g.abs() > thr).double().mean())
    assert 0 < expected < 100
    mon = ActiveUnitMonitor(threshold=thr)
    # another monitor reading the same records first must not disturb the counts
    trainer = make_trainer(max_epochs=1, callbacks=[LatentUtilizationMonitor(stages="train"), mon],
                           accumulate_grad_batches=accumulate, precision=precision)
    trainer.fit(model, loader(classification_data(32), batch))
    assert float(trainer.callback_metrics["active_units/units"]) == pytest.approx(expected)
    assert float(trainer.callback_metrics["active_units/all"]) == pytest.approx(expected)


def test_active_units_rise_with_tau_b(make_trainer, known_logit_grad_model, classification_data, loader):
    logits = torch.tensor([-8.0, -6.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.5, 5.0, 7.0])
    res = []
    for tb in (0.5, 1.0, 4.0):
        mon = ActiveUnitMonitor(threshold=0.02, window=2)
        make_trainer(max_epochs=1, callbacks=[mon]).fit(known_logit_grad_model(logits, torch.ones(10), tau_b=tb),
                                                         loader(classification_data(32), 8))
        res.append(mon.last_results["active_units/all"])
    assert res == pytest.approx([40.0, 50.0, 100.0])


def test_active_units_two_monitors_resume_continue_the_window(tmp_path, make_trainer, known_logit_grad_model,
                                                              classification_data, loader):
    """tau_b rises every step, so a window's percentage is the mean over its steps; a run
    resumed in the middle of the window counts the steps before the checkpoint too."""
    logits = torch.tensor([-8.0, -6.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.5, 5.0, 7.0])
    taus = [0.5, 1.0, 2.0, 4.0]

    def run(ckpt_path=None):
        model = known_logit_grad_model(logits, torch.ones(10))
        monitors = [ActiveUnitMonitor(threshold=0.02, window=4), ActiveUnitMonitor(threshold=0.05, window=4, prefix="strict")]
        sched = TemperatureScheduler(tau_b={"kind": "step", "start": 0.5, "end": 4.0, "step_size": 1, "gamma": 2.0})
        trainer = make_trainer(max_epochs=1, callbacks=[sched, *monitors, _checkpoints(tmp_path, every_n_train_steps=2)],
                               enable_checkpointing=True)
        trainer.fit(model, loader(classification_data(32), 8), ckpt_path=ckpt_path)  # 4 steps
        return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("active_units/", "strict/"))}

    full = run()
    for prefix, thr in (("active_units", 0.02), ("strict", 0.05)):
        model = known_logit_grad_model(logits, torch.ones(10))
        per_step = [100.0 * float((model.per_example_logit_grad(t).abs() > thr).double().mean()) for t in taus]
        assert full[f"{prefix}/all"] == pytest.approx(sum(per_step) / 4)
        assert len(set(per_step)) > 1  # the steps differ: a half window would give another mean
    assert run(ckpt_path=str(tmp_path / "step=2.ckpt")) == pytest.approx(full)


@pytest.mark.parametrize("stride, accumulate", [(2, 1), (3, 1), (2, 2)])
def test_active_units_stride_counts_only_the_sampled_steps(stride, accumulate, make_trainer, known_logit_grad_model,
                                                           classification_data, loader):
    """tau_b doubles every optimizer step; with ``stride`` the window's percentages (per entry
    and per neuron) are those of steps 0, stride, 2 * stride, ... alone (every micro-batch of
    a sampled step), not of all four steps."""
    logits = torch.tensor([-8.0, -6.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.5, 5.0, 7.0])
    taus = [0.5, 1.0, 2.0, 4.0]
    sched = TemperatureScheduler(tau_b={"kind": "step", "start": 0.5, "end": 4.0, "step_size": 1, "gamma": 2.0})
    mon = ActiveUnitMonitor(threshold=0.02, neuron_thresholds=[0.03], stride=stride)
    trainer = make_trainer(max_epochs=1, callbacks=[sched, mon], accumulate_grad_batches=accumulate)
    trainer.fit(known_logit_grad_model(logits, torch.ones(10)), loader(classification_data(32), 8 // accumulate))
    assert trainer.global_step == 4
    model = known_logit_grad_model(logits, torch.ones(10))
    grads = [model.per_example_logit_grad(t).abs() for t in taus[::stride]]
    active = sum(100.0 * float((g > 0.02).double().mean()) for g in grads) / len(grads)
    inactive = 100.0 * float((sum(grads) / len(grads) <= 0.03).double().mean())
    every_step = sum(100.0 * float((model.per_example_logit_grad(t).abs() > 0.02).double().mean()) for t in taus) / 4
    assert active != pytest.approx(every_step)  # the stride changes the answer here
    assert mon.last_results["active_units/all"] == pytest.approx(active)
    assert mon.last_results["inactive_neurons/all@0.03"] == pytest.approx(inactive)


def test_active_units_stride_is_checked():
    with pytest.raises(ValueError, match="`stride`"):
        ActiveUnitMonitor(stride=0)
    with pytest.raises(ValueError, match="counted step"):
        ActiveUnitMonitor(window=4, stride=5)


@pytest.mark.parametrize("accumulate, precision, batch", [(1, "32-true", 8), (2, "32-true", 4), (1, "bf16-mixed", 16)])
def test_inactive_neurons_exact_on_known_gradients(accumulate, precision, batch, make_trainer, known_logit_grad_model,
                                                   classification_data, loader):
    """Every example has the same per-unit gradient g_j, so a unit is inactive at t iff |g_j| <= t."""
    logits = torch.tensor([-8.0, -6.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.5, 5.0, 7.0])
    weights = torch.tensor([1.0, -1.0, 2.0, 0.5, 1.0, -1.0, 1.0, 1.0, 1.5, 1.0])
    model = known_logit_grad_model(logits, weights, tau_b=1.0)
    g = model.per_example_logit_grad(1.0).abs()
    thresholds = [0.003, 0.02, 0.1]
    assert all(((g - t).abs() > 0.1 * t).all() for t in thresholds)  # no unit near a threshold (bf16 rounding)
    expected = [100.0 * float((g <= t).double().mean()) for t in thresholds]
    assert len(set(expected)) == 3  # the thresholds give three different answers
    mon = ActiveUnitMonitor(threshold=0.02, neuron_thresholds=thresholds)
    trainer = make_trainer(max_epochs=1, callbacks=[mon], accumulate_grad_batches=accumulate, precision=precision)
    trainer.fit(model, loader(classification_data(32), batch))
    for t, e in zip(thresholds, expected):
        assert float(trainer.callback_metrics[f"inactive_neurons/units@{t:g}"]) == pytest.approx(e)
        assert float(trainer.callback_metrics[f"inactive_neurons/all@{t:g}"]) == pytest.approx(e)
    # per entry and per neuron agree here (identical rows): active + inactive = 100 at the same threshold
    assert float(trainer.callback_metrics["active_units/all"]) + expected[1] == pytest.approx(100.0)


def test_inactive_neurons_resume_continues_the_window(tmp_path, make_trainer, known_logit_grad_model,
                                                      classification_data, loader):
    """tau_b doubles every step: the per-unit mean over the epoch mixes 4 different gradients, so
    a resumed run gets the same value only if the sums before the checkpoint were restored."""
    logits = torch.tensor([-8.0, -6.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.5, 5.0, 7.0])

    def run(ckpt_path=None):
        sched = TemperatureScheduler(tau_b={"kind": "step", "start": 0.5, "end": 4.0, "step_size": 1, "gamma": 2.0})
        mon = ActiveUnitMonitor(threshold=0.02, neuron_thresholds=[0.01, 0.03])
        trainer = make_trainer(max_epochs=1, callbacks=[sched, mon, _checkpoints(tmp_path, every_n_train_steps=2)],
                               enable_checkpointing=True)
        trainer.fit(known_logit_grad_model(logits, torch.ones(10)), loader(classification_data(32), 8), ckpt_path=ckpt_path)
        return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("inactive_neurons/")}

    full = run()
    model = known_logit_grad_model(logits, torch.ones(10))
    mean = sum(model.per_example_logit_grad(t).abs() for t in [0.5, 1.0, 2.0, 4.0]) / 4
    assert full["inactive_neurons/all@0.03"] == pytest.approx(100.0 * float((mean <= 0.03).double().mean()))
    half = sum(model.per_example_logit_grad(t).abs() for t in [2.0, 4.0]) / 2
    assert float((half <= 0.03).double().mean()) != float((mean <= 0.03).double().mean())
    assert run(ckpt_path=str(tmp_path / "step=2.ckpt")) == pytest.approx(full)


def test_inactive_neurons_thresholds_are_checked():
    with pytest.raises(ValueError, match="neuron_thresholds"):
        ActiveUnitMonitor(neuron_thresholds=[])
    with pytest.raises(ValueError, match="neuron_thresholds"):
        ActiveUnitMonitor(neuron_thresholds=[-1.0])


# --------------------------------------------------------------------------- gate usage
def _mixed_with_known_gates(mixed_net):
    seed_everything(0)
    model = mixed_net()
    ids = torch.tensor([3] * 8 + [6] * 4 + [0] * 2 + [15, 9])
    with torch.no_grad():
        model.gates.gate_logits.zero_()
        model.gates.gate_logits[torch.arange(16), ids] = 50.0  # stays argmax for a short run
    return model, torch.bincount(ids, minlength=16)


def test_gate_usage_counts_and_perplexity(make_trainer, mixed_net, classification_data, loader):
    model, counts = _mixed_with_known_gates(mixed_net)
    mon = GateUsageMonitor()
    trainer = make_trainer(max_epochs=1, callbacks=[mon])
    trainer.fit(model, loader(classification_data(16), 8))
    assert mon.last_counts.tolist() == counts.tolist()
    expected = float(perplexity_from_counts(counts))
    assert float(trainer.callback_metrics["gates/perplexity"]) == pytest.approx(expected, rel=1e-6)
    assert float(trainer.callback_metrics["gates/perplexity/gates"]) == pytest.approx(expected, rel=1e-6)
    assert float(trainer.callback_metrics["gates/fraction/03"]) == pytest.approx(0.5)


def test_gate_usage_figure_names_the_gates():
    counts = torch.tensor([2, 0, 0, 8, 0, 0, 4, 0, 0, 1, 0, 0, 0, 0, 0, 1])
    ax = gate_usage_figure(counts, layer="net.3").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(GATE_NAMES)
    assert "AND" in " ".join(GATE_NAMES) and len(ax.patches) == 16
    assert [p.get_height() for p in ax.patches] == pytest.approx((100.0 * counts / 16).tolist())
    assert ax.get_xlabel() == "gate" and "%" in ax.get_ylabel()
    assert "net.3" in ax.get_title()
    with pytest.raises(ValueError, match="shape"):
        gate_usage_figure(torch.ones(4))


def test_gate_figures_go_to_tensorboard(tmp_path, monkeypatch, make_trainer, mixed_net, classification_data, loader):
    model, counts = _mixed_with_known_gates(mixed_net)
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    calls = []
    monkeypatch.setattr(logger.experiment, "add_figure",
                        lambda tag, figure, global_step=None, close=True: calls.append((tag, figure, global_step)))
    make_trainer(max_epochs=2, logger=logger, callbacks=[GateUsageMonitor()]).fit(model, loader(classification_data(16), 8))
    assert [(tag, step) for tag, _, step in calls] == [("gates/usage/gates", 2), ("gates/usage/gates", 4)]
    ax = calls[-1][1].axes[0]
    assert "gates" in ax.get_title() and len(ax.patches) == 16
    assert [p.get_height() for p in ax.patches] == pytest.approx((100.0 * counts / 16).tolist())
    assert not list(tmp_path.rglob("*.png"))  # TensorBoard has them: no PNG


def test_gate_figures_saved_next_to_csv_logs(tmp_path, make_trainer, mixed_net, classification_data, loader):
    model, _ = _mixed_with_known_gates(mixed_net)
    logger = CSVLogger(str(tmp_path), name="csv")
    two = [GateUsageMonitor(), GateUsageMonitor(every_n_steps=1, log_fractions=False, prefix="gates_steps")]
    trainer = make_trainer(max_epochs=1, logger=logger, callbacks=two)
    trainer.fit(model, loader(classification_data(16), 8))
    pngs = sorted(os.path.relpath(p, logger.log_dir) for p in map(str, tmp_path.rglob("*.png")))
    assert pngs == ["gates_steps_usage/gates_step1.png", "gates_steps_usage/gates_step2.png", "gates_usage/gates_step2.png"]
    assert os.path.isfile(os.path.join(logger.log_dir, "metrics.csv"))


def test_figures_skipped_with_one_warning_without_matplotlib(tmp_path, monkeypatch, make_trainer, mixed_net,
                                                             classification_data, loader):
    model, _ = _mixed_with_known_gates(mixed_net)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # ``import matplotlib`` raises ImportError
    mon, summary = GateUsageMonitor(), TrainingSummary(next_steps=[])
    trainer = make_trainer(max_epochs=2, logger=CSVLogger(str(tmp_path)), callbacks=[mon, summary])
    with pytest.warns(UserWarning, match=r"pip install lightning_discrete\[plots\]") as record:
        trainer.fit(model, loader(classification_data(16), 8), loader(classification_data(8, seed=1), 8))
    hints = [str(w.message) for w in record if "lightning_discrete[plots]" in str(w.message)]
    assert len(hints) == 2 and any("gate-usage" in h for h in hints) and any("curves" in h for h in hints)
    assert not list(tmp_path.rglob("*.png")) and summary.figure_path is None
    assert float(trainer.callback_metrics["gates/perplexity"]) > 1  # the numbers are still logged


# --------------------------------------------------------------------------- summary, threads
def test_training_curves_figure_labels_and_legends():
    history = [{"epoch": float(e), "val/acc": 0.5 + 0.1 * e, "train/perplexity": 1.5, "val/perplexity": 1.4 + 0.1 * e,
                "temperature/tau_f": 1.0 / (e + 1)} for e in range(3)]
    fig = training_curves_figure(history)
    assert [ax.get_ylabel() for ax in fig.axes] == ["accuracy / loss", "perplexity of the units", "temperature"]
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends == [["validation accuracy"], ["training", "validation"], ["tau_f"]]
    assert list(fig.axes[1].lines[1].get_ydata()) == pytest.approx([1.4, 1.5, 1.6])
    assert training_curves_figure([{"epoch": 0.0}]) is None


def test_summary_two_instances_resume_with_the_whole_history(tmp_path, make_trainer, tiny_binary_net,
                                                             classification_data, loader):
    def run(ckpt_path=None):
        summaries = [TrainingSummary(next_steps=[]), TrainingSummary(next_steps=[], filename="curves_b.png")]
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
        trainer = make_trainer(max_epochs=4, callbacks=[*summaries, ckpt], enable_checkpointing=True,
                               logger=CSVLogger(str(tmp_path)))
        trainer.fit(tiny_binary_net(), loader(classification_data(16), 8), loader(classification_data(8, seed=1), 8),
                    ckpt_path=ckpt_path)
        return summaries

    full = run()
    resumed = run(ckpt_path=str(tmp_path / "ckpt" / "epoch=1.ckpt"))
    for s_full, s_res in zip(full, resumed):
        assert [r["epoch"] for r in s_res.history] == [0.0, 1.0, 2.0, 3.0]
        assert s_res.history[:2] == s_full.history[:2]
        assert os.path.isfile(s_res.figure_path)
    assert os.path.basename(resumed[1].figure_path) == "curves_b.png"
    assert "Trained StochasticBinaryNetwork" in resumed[0].text and "for 4 epoch(s)" in resumed[0].text


def test_cpu_threads_two_instances_and_resume(tmp_path, make_trainer, tiny_binary_net, classification_data, loader):
    before = torch.get_num_threads()
    seen = []

    class Probe(TemperatureScheduler):
        def on_train_batch_start(self, *args, **kwargs):
            seen.append(torch.get_num_threads())

    def run(ckpt_path=None):
        callbacks = [CPUThreads(1), CPUThreads(2), Probe(tau=1.0), _checkpoints(tmp_path, every_n_train_steps=1)]
        make_trainer(max_epochs=1, callbacks=callbacks, enable_checkpointing=True).fit(
            tiny_binary_net(), loader(classification_data(16), 8), ckpt_path=ckpt_path)

    torch.set_num_threads(3)
    try:
        run()
        after = torch.get_num_threads()
        run(ckpt_path=str(tmp_path / "step=1.ckpt"))
        after_resume = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 2, 2]  # the instance set up last is in force, resumed run included
    assert after == after_resume == 3


# --------------------------------------------------------------------------- all monitors, accumulation, bf16
EXPECTED_NAMES = {
    *(f"{stage}/{stat}/{m}" for stage in ("train", "val") for stat in ("perplexity", "dead_codes") for m in ("code", "units", "gates")),
    *(f"{stage}/{stat}/code" for stage in ("train", "val") for stat in ("joint_perplexity", "joint_used")),
    *(f"active_units/{m}" for m in ("code", "units", "gates", "all")),
    "grad_snr/mean", "grad_snr/gates.gate_logits/median", "grad_snr_window/mean", "gates/perplexity",
    "temperature/tau_f", "temperature/tau_b",
}


@pytest.mark.parametrize("accumulate, precision", [(2, "32-true"), (2, "bf16-mixed")])
def test_all_monitors_accumulation_and_bf16(accumulate, precision, make_trainer, all_monitors, mixed_net, classification_data, loader):
    seed_everything(0)
    callbacks = all_monitors()
    trainer = make_trainer(max_epochs=2, callbacks=callbacks, accumulate_grad_batches=accumulate, precision=precision)
    trainer.fit(mixed_net(), loader(classification_data(32), 4), loader(classification_data(16, seed=1), 8))
    metrics = trainer.callback_metrics
    assert EXPECTED_NAMES <= set(metrics)
    bad = {k: float(metrics[k]) for k in EXPECTED_NAMES if not math.isfinite(float(metrics[k]))}
    assert not bad
    # 8 steps of a linear schedule 1.0 -> 0.5: the last step (7) uses 1 - 0.5 * 7 / 8
    assert float(metrics["temperature/tau_f"]) == pytest.approx(1.0 - 0.5 * 7 / 8)

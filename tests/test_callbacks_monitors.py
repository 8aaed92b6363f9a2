import math
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.precision import Precision

from lightning_discrete.callbacks import (
    ActiveUnitMonitor,
    GateUsageMonitor,
    GradientSNRMonitor,
    LatentUtilizationMonitor,
    TemperatureScheduler,
    bar_chart_image,
    snr_statistics,
)
from lightning_discrete.metrics import perplexity_from_counts

from _callback_helpers import (
    KnownLogitGradModel,
    MixedNet,
    NoisyLinearModel,
    binary_images,
    classification_data,
    finite_metrics,
    loader,
    tiny_autoencoder,
    tiny_binary_net,
    trainer_kwargs,
)



# --------------------------------------------------------------------------- utilisation
def test_val_perplexity_matches_argmax_codes_by_hand():
    seed_everything(0)
    model = tiny_autoencoder()
    data = binary_images(40)
    mon = LatentUtilizationMonitor(stages=("val",))
    trainer = Trainer(callbacks=[mon], **trainer_kwargs())
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
    assert not model.bottleneck._recording and model.bottleneck.last_indices is None


def test_train_utilization_binary_units_in_range():
    seed_everything(0)
    model = tiny_binary_net()
    mon = LatentUtilizationMonitor(stages="train")
    trainer = Trainer(max_epochs=1, callbacks=[mon], **trainer_kwargs())
    trainer.fit(model, loader(classification_data(32), 8))
    vals = finite_metrics(trainer.callback_metrics, "train/perplexity/")
    assert set(vals) == {"train/perplexity/hidden.1", "train/perplexity/hidden.3"}
    assert all(1.0 <= v <= 2.0 for v in vals.values())
    assert "train/joint_perplexity/hidden.1" in trainer.callback_metrics  # 2**6 codes: tracked


# --------------------------------------------------------------------------- gradient SNR
def _fake_trainer():
    return SimpleNamespace(
        world_size=1,
        global_rank=0,
        precision_plugin=Precision(),
        strategy=SimpleNamespace(reduce=lambda t, reduce_op: t),
    )


def test_probe_snr_matches_analytic():
    c = torch.linspace(0.25, 2.0, 40)
    sigma = 0.5
    model = NoisyLinearModel(c, sigma)
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


def test_probe_leaves_grad_params_and_rng_untouched():
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
    assert 0 < stats["mean"] < math.inf and set(stats) >= {"hidden.0.weight/mean", "head.bias/median"}


def _train_weights(callbacks, accumulate=1):
    seed_everything(1)
    model = tiny_binary_net()
    trainer = Trainer(max_epochs=2, callbacks=callbacks, **trainer_kwargs(accumulate_grad_batches=accumulate))
    trainer.fit(model, loader(classification_data(32), 8))
    opt = trainer.optimizers[0].state_dict()["state"]
    return [p.detach().clone() for p in model.parameters()], opt, trainer


def test_probe_does_not_change_training_trajectory():
    base, opt_base, _ = _train_weights([])
    mon = GradientSNRMonitor(every_n_steps=2, num_samples=4)
    probed, opt_probed, trainer = _train_weights([mon])
    assert mon._last_probe_step == 6
    finite_metrics(trainer.callback_metrics, "grad_snr/")
    assert all(torch.equal(a, b) for a, b in zip(base, probed))
    for k in opt_base:
        assert torch.equal(opt_base[k]["exp_avg"], opt_probed[k]["exp_avg"])
        assert torch.equal(opt_base[k]["exp_avg_sq"], opt_probed[k]["exp_avg_sq"])


@pytest.mark.parametrize("accumulate", [1, 2])
def test_window_snr_matches_analytic(accumulate):
    """Step gradients are means of ``accumulate`` micro-batch gradients: SNR x sqrt(accumulate)."""
    seed_everything(0)
    c = torch.linspace(0.25, 2.0, 40)
    model = NoisyLinearModel(c, sigma=1.0)
    mon = GradientSNRMonitor(mode="window", window=200)
    data = loader(classification_data(200 * accumulate), 1)
    Trainer(max_epochs=1, callbacks=[mon], **trainer_kwargs(accumulate_grad_batches=accumulate)).fit(model, data)
    assert mon.last_results["mean"] == pytest.approx(float(c.mean()) * math.sqrt(accumulate), rel=0.06)


# --------------------------------------------------------------------------- active units
@pytest.mark.parametrize("accumulate, precision, batch", [(1, "32-true", 8), (2, "32-true", 4), (1, "bf16-mixed", 16)])
def test_active_units_exact_on_known_gradients(accumulate, precision, batch):
    logits = torch.tensor([-8.0, -6.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.5, 5.0, 7.0])
    weights = torch.tensor([1.0, -1.0, 2.0, 0.5, 1.0, -1.0, 1.0, 1.0, 1.5, 1.0])
    model = KnownLogitGradModel(logits, weights, tau_b=1.0)
    thr = 0.02
    g = model.per_example_logit_grad()
    assert ((g.abs() - thr).abs() > 0.003).all()  # nowhere near the threshold
    expected = 100.0 * float((g.abs() > thr).double().mean())
    assert 0 < expected < 100
    mon = ActiveUnitMonitor(threshold=thr)
    # another monitor reading the same records first must not disturb the counts
    trainer = Trainer(max_epochs=1, callbacks=[LatentUtilizationMonitor(stages="train"), mon], **trainer_kwargs(accumulate_grad_batches=accumulate, precision=precision))
    trainer.fit(model, loader(classification_data(32), batch))
    assert float(trainer.callback_metrics["active_units/units"]) == pytest.approx(expected)
    assert float(trainer.callback_metrics["active_units/all"]) == pytest.approx(expected)


def test_active_units_rise_with_tau_b():
    logits = torch.tensor([-8.0, -6.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.5, 5.0, 7.0])
    res = []
    for tb in (0.5, 1.0, 4.0):
        model = KnownLogitGradModel(logits, torch.ones(10), tau_b=tb)
        mon = ActiveUnitMonitor(threshold=0.02, window=2)
        Trainer(max_epochs=1, callbacks=[mon], **trainer_kwargs()).fit(model, loader(classification_data(32), 8))
        res.append(mon.last_results["active_units/all"])
    assert res == pytest.approx([40.0, 50.0, 100.0])


# --------------------------------------------------------------------------- gate usage
class _ImageLogger(Logger):
    def __init__(self):
        super().__init__()
        self.images = []
        self.metrics = []

    @property
    def name(self):
        return "img"

    @property
    def version(self):
        return 0

    @property
    def experiment(self):
        return self

    def add_image(self, tag, img, global_step=None, dataformats="CHW"):
        self.images.append((tag, img, global_step, dataformats))

    def log_metrics(self, metrics, step=None):
        self.metrics.append(metrics)

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_gate_usage_counts_perplexity_and_image():
    seed_everything(0)
    model = MixedNet()
    ids = torch.tensor([3] * 8 + [6] * 4 + [0] * 2 + [15, 9])
    with torch.no_grad():
        model.gates.gate_logits.zero_()
        model.gates.gate_logits[torch.arange(16), ids] = 50.0  # stays argmax for a short run
    mon = GateUsageMonitor()
    logger = _ImageLogger()
    kw = trainer_kwargs(logger=logger, log_every_n_steps=1)
    trainer = Trainer(max_epochs=1, callbacks=[mon], **kw)
    trainer.fit(model, loader(classification_data(16), 8))
    counts = torch.bincount(ids, minlength=16)
    assert mon.last_counts.tolist() == counts.tolist()
    expected = float(perplexity_from_counts(counts))
    assert float(trainer.callback_metrics["gates/perplexity"]) == pytest.approx(expected, rel=1e-6)
    assert float(trainer.callback_metrics["gates/perplexity/gates"]) == pytest.approx(expected, rel=1e-6)
    assert float(trainer.callback_metrics["gates/fraction/03"]) == pytest.approx(0.5)
    ((tag, img, step, fmt),) = logger.images
    assert tag == "gates/usage" and img.shape[0] == 3 and img.dtype == torch.uint8 and fmt == "CHW"


def test_bar_chart_image_heights():
    img = bar_chart_image(torch.tensor([0.0, 1.0, 2.0]), height=42, bar_width=4, gap=2)
    assert img.shape == (3, 42, 3 * 6 + 2)
    blue = (img[2] == 180) & (img[0] == 31)
    heights = [int(blue[:, 2 + i * 6].sum()) for i in range(3)]
    assert heights == [0, 20, 40]


# --------------------------------------------------------------------------- all monitors, accumulation, bf16
def _all_callbacks():
    return [
        TemperatureScheduler(tau_f={"kind": "linear", "start": 1.0, "end": 0.5}, tau_b=2.0),
        LatentUtilizationMonitor(),
        GradientSNRMonitor(every_n_steps=2, num_samples=4),
        GradientSNRMonitor(mode="window", window=2),
        ActiveUnitMonitor(window=2),
        GateUsageMonitor(),
    ]


def check_all_metrics(metrics, gates=True):
    tf = float(metrics["temperature/tau_f"])
    assert 0.5 <= tf <= 1.0 and float(metrics["temperature/tau_b"]) == 2.0
    for stage in ("train", "val"):
        p = finite_metrics(metrics, f"{stage}/perplexity/")
        assert p[f"{stage}/perplexity/code"] <= 4.0
        assert all(v >= 1.0 for v in p.values())
        assert 1.0 <= float(metrics[f"{stage}/joint_perplexity/code"]) <= 16.0
        assert all(0 <= v <= 1 for v in finite_metrics(metrics, f"{stage}/dead_codes/").values())
    for prefix in ("grad_snr/", "grad_snr_window/"):
        snr = finite_metrics(metrics, prefix)
        assert all(v >= 0 for v in snr.values())
        assert {prefix + "mean", prefix + "gates.gate_logits/median"} <= set(snr)
    act = finite_metrics(metrics, "active_units/")
    assert set(act) == {"active_units/code", "active_units/units", "active_units/gates", "active_units/all"}
    assert all(0 <= v <= 100 for v in act.values())
    if gates:
        assert 1.0 <= float(metrics["gates/perplexity"]) <= 16.0


@pytest.mark.parametrize("accumulate, precision", [(2, "32-true"), (2, "bf16-mixed")])
def test_all_monitors_accumulation_and_bf16(accumulate, precision):
    seed_everything(0)
    model = MixedNet()
    trainer = Trainer(
        max_epochs=2,
        callbacks=_all_callbacks(),
        **trainer_kwargs(accumulate_grad_batches=accumulate, precision=precision),
    )
    trainer.fit(model, loader(classification_data(32), 4), loader(classification_data(16, seed=1), 8))
    check_all_metrics(trainer.callback_metrics)


def test_window_snr_accurate_when_mean_dwarfs_noise():
    """Gradients ``1000 + N(0, 1)``: float32 sums of g and g**2 would lose the variance to
    cancellation; the window's shifted sums must match a float64 computation."""
    torch.manual_seed(0)
    steps = 50
    draws = 1000.0 + torch.randn(steps, 3, dtype=torch.float64)

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3))
            self.logged = {}

        def log(self, name, value, **kwargs):
            self.logged[name] = float(value)

    module = Holder()
    mon = GradientSNRMonitor(mode="window", window=steps, per_layer=False)
    for g in draws:
        module.w.grad = g.to(torch.float32)
        mon.on_before_optimizer_step(None, module, None)
    g32 = draws.to(torch.float32).to(torch.float64)  # what the monitor saw
    expected = (g32.mean(0).abs() / g32.std(0)).mean()
    assert module.logged["grad_snr_window/mean"] == pytest.approx(float(expected), rel=1e-4)
    assert 500 < module.logged["grad_snr_window/mean"] < 2000


def test_window_snr_stride_samples_every_kth_step():
    """``stride=2``: a window of 100 samples needs 200 steps, and its SNR is the same."""
    c = torch.linspace(0.25, 2.0, 40)
    for steps, logged in ((198, False), (200, True)):
        seed_everything(0)
        mon = GradientSNRMonitor(mode="window", window=100, stride=2)
        Trainer(max_epochs=1, callbacks=[mon], **trainer_kwargs()).fit(
            NoisyLinearModel(c, sigma=1.0), loader(classification_data(steps), 1)
        )
        assert bool(mon.last_results) is logged
    assert mon.last_results["mean"] == pytest.approx(float(c.mean()), rel=0.08)
    with pytest.raises(ValueError, match="stride"):
        GradientSNRMonitor(mode="window", stride=0)

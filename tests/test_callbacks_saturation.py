"""SaturationMonitor: a bottleneck whose backward distribution is one-hot, or whose codes are out of
the backward pass's reach, is reported and warned about."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from lightning_discrete.callbacks import SaturationMonitor
from lightning_discrete.metrics import BuriedCodes, Saturation, buried_codes, saturation


def test_statistics_by_hand():
    # latent 0: softmax([0, 1]) is far from one-hot; latent 1: softmax([0, 40]) has 1 - p = e^-40
    logits = torch.tensor([[[0.0, 1.0], [0.0, 40.0]]])
    share, spread = saturation(logits, tau_b=1.0)
    assert (float(share), float(spread)) == (0.5, 20.5)
    # a higher backward temperature de-saturates the second latent: 1 - p = e^-4 > 1e-6
    assert float(saturation(logits, tau_b=10.0)[0]) == 0.0
    # the category dim may be any dim
    assert [float(v) for v in saturation(logits.transpose(1, 2), 1.0, dim=1)] == [0.5, 20.5]
    # binary units (logits (l, 0)): saturated when sigmoid(-|l| / tau_b) < tol; range |l|
    units = torch.tensor([[0.5, -30.0, 12.0]])
    share, spread = saturation(units, 1.0, binary=True)
    assert float(share) == pytest.approx(1 / 3) and float(spread) == pytest.approx(42.5 / 3)
    share, _ = saturation(units, 1.0, binary=True, tol=1e-5)
    assert float(share) == pytest.approx(2 / 3)  # sigmoid(-12) = 6.1e-6: above 1e-6, below 1e-5


def test_metric_sums_batches_like_the_functional_on_their_union():
    a = torch.randn(5, 3, 4) * 20
    b = torch.randn(7, 3, 4) * 20
    metric = Saturation()
    metric.update(a, tau_b=0.5)
    metric.update(b, tau_b=0.5)
    expected = saturation(torch.cat([a, b]), tau_b=0.5)
    assert [float(v) for v in metric.compute()] == pytest.approx([float(v) for v in expected])
    assert 0.0 < float(expected[0]) < 1.0  # some but not all latents saturated at this scale


@pytest.mark.parametrize("kwargs", [{"tol": 0.0}, {"tol": 1.0}, {"warn_above": 1.5}, {"patience": 0},
                                    {"warn_buried_above": -0.1}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SaturationMonitor(**kwargs)
    if "tol" in kwargs:
        with pytest.raises(ValueError, match="tol"):
            Saturation(**kwargs)


def _collapsed(model):
    """The failure of the MNIST autoencoder at a too-high learning rate: every input gets the
    same code because the encoder's logits are huge (here: a bias of 60 on one category)."""
    last = model.encoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias.view(model.num_latents, model.num_categories)[:, 0] = 60.0
    return model


def _fit(make_trainer, model, data, callbacks, steps=6, kind="saturated", **kw):
    trainer = make_trainer(max_steps=steps, log_every_n_steps=1, callbacks=callbacks, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, data)
    return trainer, [w for w in caught if kind in str(w.message)]


def test_a_collapsed_autoencoder_is_reported_and_warned_about_once(
    make_trainer, tiny_autoencoder, binary_images, loader
):
    model = _collapsed(tiny_autoencoder(tau_f=2.0, tau_b=0.5, optimizer=lambda p: torch.optim.SGD(p, lr=0.0)))
    trainer, caught = _fit(make_trainer, model, loader(binary_images()), [SaturationMonitor(patience=2)])
    assert len(caught) == 1  # saturated on all 6 steps, warned once
    text = str(caught[0].message)
    assert "'bottleneck'" in text and "100%" in text and "tau_b=0.5" in text
    assert "lower learning rate" in text and "higher tau_b" in text
    assert float(trainer.logged_metrics["saturation/bottleneck"]) == 1.0
    assert float(trainer.logged_metrics["logit_range/bottleneck"]) == pytest.approx(60.0)


def test_a_healthy_autoencoder_is_not_warned_about(make_trainer, tiny_autoencoder, binary_images, loader):
    model = tiny_autoencoder(tau_f=2.0, tau_b=0.5)
    trainer, caught = _fit(make_trainer, model, loader(binary_images()), [SaturationMonitor(patience=1)])
    assert caught == []
    assert float(trainer.logged_metrics["saturation/bottleneck"]) < 0.5
    assert 0.0 < float(trainer.logged_metrics["logit_range/bottleneck"]) < 10.0


def test_binary_units_are_monitored(make_trainer, tiny_binary_net, classification_data, loader):
    model = tiny_binary_net(optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.Linear) and layer.out_features == 6:
                layer.bias.fill_(-50.0)  # every unit off, sigmoid(-50) ~ 2e-22
    trainer, caught = _fit(make_trainer, model, loader(classification_data()), [SaturationMonitor(patience=3)])
    names = [k for k in trainer.logged_metrics if k.startswith("saturation/")]
    assert len(names) == 2 and all(float(trainer.logged_metrics[k]) == 1.0 for k in names)
    assert len(caught) == 2  # once per bottleneck


def test_two_instances_checkpoint_and_resume_without_warning_again(
    make_trainer, tiny_autoencoder, binary_images, loader, tmp_path
):
    def monitors():
        return [SaturationMonitor(patience=2), SaturationMonitor(patience=2, warn_above=0.99)]

    model = _collapsed(tiny_autoencoder(tau_f=2.0, tau_b=0.5, optimizer=lambda p: torch.optim.SGD(p, lr=0.0)))
    trainer, caught = _fit(make_trainer, model, loader(binary_images()), monitors(), steps=4,
                           default_root_dir=tmp_path)
    assert len(caught) == 2  # one per instance
    ckpt = tmp_path / "sat.ckpt"
    trainer.save_checkpoint(ckpt)
    states = torch.load(ckpt, weights_only=False)["callbacks"]
    assert len([k for k in states if k.startswith("SaturationMonitor")]) == 2
    resumed = make_trainer(max_steps=8, log_every_n_steps=1, callbacks=monitors())
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        resumed.fit(_collapsed(tiny_autoencoder(tau_f=2.0, tau_b=0.5, optimizer=lambda p: torch.optim.SGD(p, lr=0.0))),
                    loader(binary_images()), ckpt_path=ckpt)
    assert resumed.global_step == 8
    assert [w for w in again if "saturated" in str(w.message)] == []  # already warned before the checkpoint


def test_buried_codes_by_hand():
    # 2 examples, 2 latents, k = 3. Latent 0: code 2 at most e^-80 on both examples -> buried;
    # latent 1: code 1 is e^-80 on example 0 but ~1 on example 1 -> mean ~0.5, not buried
    logits = torch.tensor([[[0.0, 1.0, -80.0], [0.0, -80.0, 0.0]],
                           [[1.0, 0.0, -90.0], [0.0, 40.0, 0.0]]])
    assert float(buried_codes(logits, tau_b=1.0)) == pytest.approx(1 / 6)
    # a backward temperature of 10 brings code 2 within reach: e^-9 > 1e-6
    assert float(buried_codes(logits, tau_b=10.0)) == 0.0
    # the category dim may be any dim
    assert float(buried_codes(logits.transpose(1, 2), 1.0, dim=1)) == pytest.approx(1 / 6)
    # the mean, not the largest value, decides: probabilities 3e-6 and 2e-7 average 1.6e-6 (not
    # buried at tol 1e-6, buried at 2e-6), where either alone would sit on one side
    units = torch.tensor([[30.0, 2.0, -math.log(1 / 3e-6 - 1)], [40.0, -2.0, -math.log(1 / 2e-7 - 1)]])
    # binary units: codes (off, on) with probabilities sigmoid(-l), sigmoid(l). Unit 0 always on
    # ("off" at most e^-30, buried), unit 1 on and off (reached both ways)
    assert float(buried_codes(units, 1.0, binary=True)) == pytest.approx(1 / 6)
    assert float(buried_codes(units, 1.0, binary=True, tol=2e-6)) == pytest.approx(2 / 6)


def test_buried_metric_over_batches_is_the_functional_on_their_union():
    torch.manual_seed(0)
    a = torch.randn(4, 3, 5) * 30
    b = torch.randn(6, 3, 5) * 30
    metric = BuriedCodes((3, 5))
    metric.update(a, tau_b=1.0)
    metric.update(b, tau_b=1.0)
    union = float(buried_codes(torch.cat([a, b]), tau_b=1.0))
    assert float(metric.compute()) == pytest.approx(union)
    assert 0.0 < union < 1.0
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.zeros(2, 3, 4), tau_b=1.0)
    with pytest.raises(ValueError, match="code_shape"):
        BuriedCodes(())


def _buried(model):
    """Codes 2 and 3 of every latent far below codes 0 and 1 (a bias of -100): half the code book
    buried while no latent is one-hot (codes 0 and 1 stay equally likely)."""
    last = model.encoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias.view(model.num_latents, model.num_categories)[:, 2:] = -100.0
    return model


def test_buried_codes_are_reported_and_warned_about_once(make_trainer, tiny_autoencoder, binary_images, loader):
    model = _buried(tiny_autoencoder(tau_f=2.0, tau_b=2.0, optimizer=lambda p: torch.optim.SGD(p, lr=0.0)))
    trainer, caught = _fit(make_trainer, model, loader(binary_images()), [SaturationMonitor(patience=2)],
                           kind="buried codes")
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "'bottleneck'" in text and "50%" in text and "tau_b=2" in text and "lower learning rate" in text
    assert float(trainer.logged_metrics["buried/bottleneck"]) == 0.5
    assert float(trainer.logged_metrics["saturation/bottleneck"]) == 0.0


def test_a_saturated_bottleneck_gets_the_saturation_warning_only(make_trainer, tiny_autoencoder, binary_images, loader):
    model = _collapsed(tiny_autoencoder(tau_f=2.0, tau_b=0.5, optimizer=lambda p: torch.optim.SGD(p, lr=0.0)))
    trainer, caught = _fit(make_trainer, model, loader(binary_images()), [SaturationMonitor(patience=2)],
                           kind="")
    assert [str(w.message).split(":")[0] for w in caught if "Bottleneck" in str(w.message)] == [
        "Bottleneck 'bottleneck' is saturated"]
    assert float(trainer.logged_metrics["buried/bottleneck"]) == 0.75  # 3 of 4 codes under the one-hot code


def test_a_healthy_autoencoder_buries_no_code(make_trainer, tiny_autoencoder, binary_images, loader):
    trainer, caught = _fit(make_trainer, tiny_autoencoder(), loader(binary_images()),
                           [SaturationMonitor(patience=1, warn_buried_above=0.0)], kind="buried codes")
    assert caught == []
    assert float(trainer.logged_metrics["buried/bottleneck"]) == 0.0


def test_the_logits_are_read_on_logging_steps_only(make_trainer, tiny_autoencoder, binary_images, loader):
    """The pre-hook is on the bottleneck during the forward of a logging step and absent from
    the others (a module with a hook takes PyTorch's slower call path on every forward)."""
    from lightning.pytorch import Callback

    from lightning_discrete.models.base import is_logging_step

    class Spy(Callback):
        rows = []

        def on_before_backward(self, trainer, pl_module, loss):  # after the forward
            self.rows.append((is_logging_step(trainer), len(pl_module.bottleneck._forward_pre_hooks)))

    spy = Spy()
    trainer = make_trainer(max_steps=6, log_every_n_steps=3, callbacks=[SaturationMonitor(), spy])
    trainer.fit(tiny_autoencoder(), loader(binary_images()))
    assert [logging for logging, _ in spy.rows] == [False, False, True] * 2
    assert [hooks for _, hooks in spy.rows] == [0, 0, 1] * 2
    assert "saturation/bottleneck" in trainer.callback_metrics  # and it was read there
    assert len(trainer.lightning_module.bottleneck._forward_pre_hooks) == 0  # none left behind


def test_a_step_that_raises_leaves_no_hook_behind(make_trainer, tiny_autoencoder, binary_images, loader,
                                                  raise_before_backward):
    model = tiny_autoencoder()
    # log_every_n_steps=1: the step that raises is a logging step, its hooks registered
    trainer = make_trainer(max_steps=2, log_every_n_steps=1, callbacks=[SaturationMonitor(), raise_before_backward()])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, loader(binary_images()))
    assert len(model.bottleneck._forward_pre_hooks) == 0


def test_a_binary_code_just_above_tol_is_not_buried():
    """The off code's probability sigmoid(-l) = 1.005e-6 (> tol = 1e-6): in float32, 1 - sigmoid(l)
    rounds it to 0.954e-6 and would count it as buried."""
    p = 1.005e-6
    units = torch.full((4, 1), math.log((1 - p) / p))
    assert float(buried_codes(units, 1.0, binary=True, tol=1e-6)) == 0.0
    assert float(buried_codes(units, 1.0, binary=True, tol=1.01e-6)) == pytest.approx(0.5)  # off buried, on not

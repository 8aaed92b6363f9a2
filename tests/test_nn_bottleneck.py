"""The bottleneck modules' protocols: temperatures, eval modes, recording, score-function surrogates."""

from __future__ import annotations

import pickle

import pytest
import torch

from lightning_discrete import functional as LF
from lightning_discrete.nn import BinaryBottleneck, CategoricalBottleneck


def test_temperatures_are_buffers_that_follow_to_and_state_dict():
    b = CategoricalBottleneck(8, estimator="decoupled_st", tau_f=2.0, tau_b=0.5)
    assert {"tau_f", "tau_b"} <= set(b.state_dict())
    b64 = b.to(torch.float64)
    assert b64.tau_f.dtype == torch.float64 and float(b64.tau_f) == 2.0
    other = CategoricalBottleneck(8, estimator="decoupled_st")
    other.load_state_dict(b.state_dict())
    assert float(other.tau_f) == 2.0 and float(other.tau_b) == 0.5


def test_tau_b_defaults_to_tau_f_and_single_temperature_estimators_stay_tied():
    assert float(BinaryBottleneck(estimator="decoupled_st", tau_f=0.3).tau_b) == pytest.approx(0.3)
    assert float(BinaryBottleneck(estimator="decoupled_st", tau_f=0.0).tau_b) == 1.0  # argmax forward
    b = CategoricalBottleneck(4, estimator="softmax_st", tau=0.7)
    b.set_temperature(tau_b=0.2)
    assert float(b.tau_f) == float(b.tau_b) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="one temperature"):
        b.set_temperature(tau_f=1.0, tau_b=2.0)
    with pytest.raises(ValueError, match="tau_f"):
        CategoricalBottleneck(4, estimator="softmax_st", tau_f=0.0)  # only decoupled may use 0
    with pytest.raises(ValueError, match="either `tau` or"):
        b.set_temperature(tau=1.0, tau_f=1.0)


def test_training_output_follows_temperatures_and_gradient_matches_functional():
    torch.manual_seed(0)
    logits = torch.randn(6, 3, 5, requires_grad=True)
    b = CategoricalBottleneck(5, estimator="decoupled_st", tau_f=0.0, tau_b=0.5)
    z = b(logits)
    torch.testing.assert_close(z, torch.nn.functional.one_hot(logits.argmax(-1), 5).float())
    w = torch.randn_like(z)
    (g,) = torch.autograd.grad((z * w).sum(), logits)
    ref = logits.detach().requires_grad_()
    (g_ref,) = torch.autograd.grad((LF.decoupled_st(ref, 0.0, 0.5) * w).sum(), ref)
    torch.testing.assert_close(g, g_ref)


def test_eval_modes():
    torch.manual_seed(0)
    logits = torch.randn(200, 4)
    b = CategoricalBottleneck(4, estimator="decoupled_st", tau_f=1.0, eval_mode="argmax").eval()
    torch.testing.assert_close(b(logits).argmax(-1), logits.argmax(-1))
    b.eval_mode = "soft"
    torch.testing.assert_close(b(logits), torch.softmax(logits, -1))
    b.eval_mode = "sample"
    z = b(logits)
    assert (z.sum(-1) == 1).all() and (z.argmax(-1) != logits.argmax(-1)).any()
    bb = BinaryBottleneck(estimator="sign_st").eval()
    assert set(bb(torch.randn(50)).unique().tolist()) <= {-1.0, 1.0}
    bb.eval_mode = "sample"  # a signed estimator samples in {-1, 1} too
    assert set(bb(torch.randn(500)).unique().tolist()) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="eval_mode"):
        CategoricalBottleneck(4, eval_mode="mode")


def test_recording_is_off_by_default_and_unions_owner_requests():
    logits = torch.randn(5, 2, 3, requires_grad=True)
    b = CategoricalBottleneck(3, estimator="identity_st")
    b(logits)
    assert b.last_indices is None and b.last_logit_grad is None
    monitor_a, monitor_b = object(), object()
    b.record(True, owner=monitor_a)
    b.record(True, grads=True, owner=monitor_b)
    z = b(logits)
    torch.testing.assert_close(b.last_indices, logits.argmax(-1))
    w = torch.randn_like(z)
    (z * w).sum().backward()
    torch.testing.assert_close(b.last_logit_grad, w)  # identity ST: dL/dl = dL/dz
    b.record(False, owner=monitor_b)  # a still asks: indices yes, gradients no
    logits2 = torch.randn(5, 2, 3, requires_grad=True)
    b(logits2).sum().backward()
    torch.testing.assert_close(b.last_indices, logits2.argmax(-1))
    torch.testing.assert_close(b.last_logit_grad, w)  # not overwritten by the new backward
    with b.recording_paused():
        b(torch.zeros(5, 2, 3))
    torch.testing.assert_close(b.last_indices, logits2.argmax(-1))  # kept through the pause
    b.record(False, owner=monitor_a)
    assert b.last_indices is None


def test_recorded_indices_are_taken_from_the_forward_when_first_read():
    """``last_indices`` is computed on the first read from the recorded forward's sample: a
    forward inside ``recording_paused`` in between does not change it, an in-place change of
    the sample before the first read is an error (not wrong codes), one after it is harmless."""
    b = CategoricalBottleneck(4, estimator="decoupled_st", tau_f=1.0, tau_b=1.0)
    b.record(True)
    z = b(torch.randn(6, 3, 4))
    expected = z.argmax(-1)
    with b.recording_paused():
        b(torch.randn(2, 3, 4))
    torch.testing.assert_close(b.last_indices, expected)
    z.zero_()  # after the read: the codes were kept
    torch.testing.assert_close(b.last_indices, expected)
    z = b(torch.randn(6, 3, 4))
    z.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        b.last_indices


def test_an_unread_sample_is_let_go_before_the_next_forward_makes_its_own():
    """Two samples are never held at once for recording: by the time the next forward runs the
    estimator, the bottleneck no longer references the previous, unread one."""
    import weakref

    b = CategoricalBottleneck(8, estimator="decoupled_st", tau_f=1.0, tau_b=1.0)
    b.record(True)
    z = b(torch.randn(4, 3, 8))
    held = weakref.ref(b._indices_source[0])
    del z
    seen = []
    inner = b._forward

    def spy(logits):
        seen.append(held() is None)
        return inner(logits)

    b._forward = spy
    z2 = b(torch.randn(4, 3, 8))
    assert seen == [True]
    torch.testing.assert_close(b.last_indices, z2.argmax(-1))


@pytest.mark.parametrize("name", [n for n in LF.ESTIMATORS if LF.get_estimator(n).has_binary])
def test_binary_training_codes_are_the_sample_above_one_half(name):
    """Every binary estimator's recorded training codes are ``z > 0.5`` of its output (hard
    unsigned ones take the {0, 1} sample itself as the codes: this checks that it is one)."""
    b = BinaryBottleneck(estimator=name, tau_f=0.5, tau_b=0.5).train()
    b.record(True)
    z = b(torch.randn(64, 7) * 3)
    assert b.last_indices.dtype == torch.long
    assert torch.equal(b.last_indices, (z > 0.5).long().reshape(64, 7))


@pytest.mark.parametrize("inference", [False, True])
def test_binary_codes_of_signed_samples_and_soft_evaluation(inference):
    """Binary codes are ``z > 0.5`` of the sample (a signed estimator's -1 and 0 are code 0) and, in
    ``eval_mode="soft"``, ``logits >= 0`` (a logit of exactly 0 is code 1), whether the
    forward ran under ``inference_mode`` (codes taken at once) or not (taken when read)."""
    logits = torch.tensor([[-2.0, -0.0, 0.0, 0.3, 4.0]])
    signed = BinaryBottleneck(estimator="sign_st").eval()
    soft = BinaryBottleneck(estimator="decoupled_st", eval_mode="soft").eval()
    for b in (signed, soft):
        b.record(True)
        with torch.inference_mode(inference):
            b(logits)
    assert torch.equal(signed.last_indices, torch.tensor([[0, 0, 0, 1, 1]]))  # sign: -1, 0, 0, 1, 1
    assert torch.equal(soft.last_indices, torch.tensor([[0, 1, 1, 1, 1]]))
    assert signed.last_indices.dtype == soft.last_indices.dtype == torch.long


def test_categories_checked_and_estimator_forms():
    b = CategoricalBottleneck(4)
    with pytest.raises(ValueError, match="expected 4 categories"):
        b(torch.randn(2, 5))
    with pytest.raises(ValueError, match="no categorical form"):
        CategoricalBottleneck(4, estimator="sign_st")
    with pytest.raises(ValueError, match="unknown `estimator`"):
        BinaryBottleneck(estimator="straight")


def test_reinforce_surrogate_matches_functional_leave_one_out():
    torch.manual_seed(0)
    logits = torch.randn(3 * 4, 2, 5, requires_grad=True)  # 3 samples x 4 examples, 2 latents
    b = CategoricalBottleneck(5, estimator="reinforce", num_samples=3)
    z = b(logits)
    assert not z.requires_grad and (z.sum(-1) == 1).all()
    losses = torch.randn(12)
    surrogate = b.surrogate_loss(losses)
    lp = LF.categorical_log_prob(logits, z).sum(-1)
    expected = LF.reinforce_loo_surrogate(lp.view(3, 4), losses.view(3, 4))
    torch.testing.assert_close(surrogate, expected)
    with pytest.raises(RuntimeError, match="training forward"):
        b.surrogate_loss(losses)  # consumed


def test_disarm_needs_stacked_pairs_and_gives_antithetic_samples():
    b = BinaryBottleneck(estimator="disarm")
    with pytest.raises(ValueError, match="antithetic"):
        b(torch.randn(3, 4))
    x = torch.randn(4, 6)
    z = b(torch.cat([x, x]))
    b1, b2 = z[:4], z[4:]
    # an antithetic pair never has both units at 0 when sigmoid(l) > 1/2, nor both at 1 below it
    assert not ((b1 == 0) & (b2 == 0) & (x > 0)).any()
    assert not ((b1 == 1) & (b2 == 1) & (x < 0)).any()


def test_bottleneck_pickles_by_estimator_name():
    b = pickle.loads(pickle.dumps(BinaryBottleneck(estimator="gumbel_softmax_st", tau=0.4)))
    assert b.estimator == "gumbel_softmax_st" and float(b.tau_f) == pytest.approx(0.4)
    assert b.estimator_spec is LF.get_estimator("gumbel_softmax_st")


@pytest.mark.parametrize("copy_", ["pickle", "deepcopy"])
def test_a_copied_bottleneck_keeps_the_recorded_indices(copy_):
    """Pickles and deep copies (checkpoint-free EMA / SWA copies) of a bottleneck whose recorded
    indices were not read yet carry those indices."""
    import copy

    for b, x in ((CategoricalBottleneck(4, estimator="decoupled_st", tau_f=1.0, tau_b=1.0), torch.randn(3, 2, 4)),
                 (BinaryBottleneck(estimator="decoupled_st", tau_f=1.0, tau_b=1.0), torch.randn(3, 5))):
        b.record(True)
        z = b(x)
        expected = (z > 0.5).long() if b.binary else z.argmax(-1)
        c = pickle.loads(pickle.dumps(b)) if copy_ == "pickle" else copy.deepcopy(b)
        torch.testing.assert_close(c.last_indices, expected)
        torch.testing.assert_close(b.last_indices, expected)


@pytest.mark.parametrize(
    "old,new", [("decoupled", "decoupled_st"), ("gumbel_st", "gumbel_softmax_st"), ("sign", "sign_st")]
)
def test_old_estimator_names_still_build_bottlenecks(old, new):
    with pytest.warns(FutureWarning, match=f"use '{new}'"):
        b = BinaryBottleneck(estimator=old)
    assert b.estimator == new
    # a pickle of an older version names the estimator by its old registry name
    with pytest.warns(FutureWarning):
        assert LF.get_estimator(old) is b.estimator_spec


def test_config_checks_settings_once_for_modules_and_models():
    from lightning_discrete.nn import BottleneckConfig

    with pytest.raises(ValueError, match="num_samples"):
        BottleneckConfig(estimator="reinforce", num_samples=1)
    with pytest.raises(ValueError, match="num_samples"):
        CategoricalBottleneck(4, estimator="reinforce", num_samples=1)
    assert BinaryBottleneck(estimator="disarm", num_samples=7).num_samples == 2  # pairs
    with pytest.raises(TypeError, match="tau_x"):
        BinaryBottleneck(tau_x=1.0)


def test_temperature_cache_follows_every_way_of_changing_the_buffers(monkeypatch):
    b = CategoricalBottleneck(4, estimator="decoupled_st", tau_f=0.5, tau_b=2.0)
    assert b.temperatures() == (0.5, 2.0)
    b.tau_f.fill_(0.25)  # in place, bypassing set_temperature
    assert b.temperatures() == (0.25, 2.0)
    b.load_state_dict({"tau_f": torch.tensor(3.0), "tau_b": torch.tensor(0.125)})
    assert b.temperatures() == (3.0, 0.125)
    b.double()  # new buffer tensors
    b.tau_b.fill_(4.0)
    assert b.temperatures() == (3.0, 4.0)
    # unchanged buffers are not read again (no device sync per forward)
    reads = []
    real_float = torch.Tensor.__float__
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: reads.append(t) or real_float(t))
    for _ in range(3):
        b(torch.randn(2, 4))
    assert not any(t is b.tau_f or t is b.tau_b for t in reads)
    b.tau_f.fill_(1.5)
    assert b.temperatures() == (1.5, 4.0) and any(t is b.tau_f for t in reads)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("eval_mode", ["argmax", "sample", "soft"])
def test_non_finite_logits_rejected_in_every_mode(train, eval_mode):
    bad = torch.tensor([[0.5, float("nan"), 1.0]])
    for b in (CategoricalBottleneck(3, eval_mode=eval_mode), BinaryBottleneck(eval_mode=eval_mode)):
        b.train(train)
        with LF.validate_args(), pytest.raises(ValueError, match="NaN or Inf"):
            b(bad)

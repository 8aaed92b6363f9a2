"""Latent-variable models (CategoricalVAE, StructuredOutputNetwork): ELBO and KL computed by
hand, the importance-weighted bound against exact enumeration, binarised MNIST, annealing."""

from __future__ import annotations

import itertools
import math
import os

import pytest
import torch
import torch.nn.functional as F

from lightning_discrete import functional as LF
from lightning_discrete.callbacks import TemperatureScheduler
from lightning_discrete.cli import cli_main
from lightning_discrete.data import MNISTDataModule
from lightning_discrete.metrics import ImportanceWeightedNLL, importance_weighted_nll
from lightning_discrete.models import CategoricalVAE, StructuredOutputNetwork


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


# --------------------------------------------------------------------------- KL and ELBO by hand
def test_categorical_kl_by_hand():
    q = [0.5, 0.25, 0.25]
    logits = torch.tensor([q]).log()
    by_hand = sum(p * math.log(p * 3) for p in q)  # KL(q || uniform over 3)
    assert LF.categorical_kl(logits).item() == pytest.approx(by_hand, abs=1e-6)
    prior = [0.2, 0.3, 0.5]
    by_hand = sum(p * math.log(p / r) for p, r in zip(q, prior))
    assert LF.categorical_kl(logits, torch.tensor(prior).log()).item() == pytest.approx(by_hand, abs=1e-6)


def test_bernoulli_kl_by_hand():
    q, r = 0.9, 0.3
    by_hand = q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5)
    assert LF.bernoulli_kl(torch.tensor([math.log(q / (1 - q))])).item() == pytest.approx(by_hand, abs=1e-6)
    by_hand = q * math.log(q / r) + (1 - q) * math.log((1 - q) / (1 - r))
    got = LF.bernoulli_kl(torch.tensor([math.log(q / (1 - q))]), torch.tensor([math.log(r / (1 - r))]))
    assert got.item() == pytest.approx(by_hand, abs=1e-6)


def _kl_reference(logits, prior, dim, bernoulli):
    """The analytic KL through autograd-differentiable log-probabilities, in float64."""
    if bernoulli:
        x, pr = logits, torch.zeros(()) if prior is None else prior
        q = torch.sigmoid(x)
        return q * (F.logsigmoid(x) - F.logsigmoid(pr)) + (1 - q) * (F.logsigmoid(-x) - F.logsigmoid(-pr))
    log_q = torch.log_softmax(logits, dim)
    log_p = -math.log(logits.shape[dim]) if prior is None else torch.log_softmax(prior.expand_as(logits), dim)
    return (log_q.exp() * (log_q - log_p)).sum(dim)


@pytest.mark.parametrize("with_prior", [False, True])
@pytest.mark.parametrize("bernoulli, dim", [(False, -1), (False, 1), (True, -1)])
def test_kl_values_and_gradients_match_autograd(bernoulli, dim, with_prior):
    """The KLs' analytic backward (both logits and a broadcast learned prior) against autograd
    through log-softmax / logsigmoid, logits spread over +-15 so saturated units are covered."""
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(6, 5, 4, generator=g) * 6).clamp(-15, 15)
    prior = torch.randn((5, 1) if dim == 1 else (4,), generator=g) if with_prior else None
    kl = LF.bernoulli_kl if bernoulli else (lambda l, p: LF.categorical_kl(l, p, dim))
    ref = (lambda l, p: _kl_reference(l, p, dim, bernoulli))
    leaves = [logits.requires_grad_()] + ([prior.requires_grad_()] if with_prior else [])
    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    got = kl(*leaves, *([None] if not with_prior else []))
    want = ref(*leaves64, *([None] if not with_prior else []))
    upstream = torch.randn(got.shape, generator=g)
    grads = torch.autograd.grad(got, leaves, upstream)
    grads64 = torch.autograd.grad(want, leaves64, upstream.double())
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-6)
    for a, b in zip(grads, grads64):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=2e-6)
    # float64 in, float64 out, gradients exact to float64 rounding (torch.autograd.gradcheck)
    args = tuple(t.detach().double().requires_grad_() for t in leaves)
    assert torch.autograd.gradcheck(lambda *a: kl(*a, *([None] if not with_prior else [])), args)


def test_kl_saturated_logits_and_second_derivative():
    """Logits far in the tails give the exact limits (no cancellation against |l|), and the
    analytic backward refuses to be differentiated again rather than give a wrong Hessian."""
    sure = torch.tensor([[0.0, 1e4, -1e4], [60.0, -60.0, 0.0]])  # one-hot q over 3: KL = log 3
    torch.testing.assert_close(LF.categorical_kl(sure), torch.full((2,), math.log(3.0)))
    sure = torch.tensor([-1e4, -60.0, 60.0, 1e4])  # q in {0, 1}: KL to Bernoulli(1/2) = log 2
    torch.testing.assert_close(LF.bernoulli_kl(sure), torch.full((4,), math.log(2.0)))
    # a sure unit against prior logit 0.3: KL = -log p(the sure value) = softplus(-+0.3)
    got = LF.bernoulli_kl(torch.tensor([-1e4, 60.0]), torch.tensor([0.3]))
    torch.testing.assert_close(got, torch.tensor([_softplus(0.3), _softplus(-0.3)]), rtol=0, atol=1e-6)
    for kl_fn in (LF.categorical_kl, LF.bernoulli_kl):
        x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
        # squared: the backward's incoming gradient depends on x, so a backward that read its
        # saved tensors as constants would give a (wrong) second derivative instead of failing
        (gx,) = torch.autograd.grad((kl_fn(x) ** 2).sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match="once_differentiable"):
            gx.sum().backward()
    with pytest.raises(ValueError, match="prior_logits"):  # a prior that does not broadcast to the logits
        LF.categorical_kl(torch.zeros(2, 3, 4), torch.zeros(2, 2, 3, 4))
    with pytest.raises(ValueError, match="prior_logits"):
        LF.bernoulli_kl(torch.zeros(2, 3), torch.zeros(4))


@pytest.mark.parametrize("prior", ["uniform", "learned"])
def test_negative_elbo_by_hand(prior):
    # one latent of 2 categories, no hidden layer: q(z|x) = (0.75, 0.25) for every x; the
    # decoder maps code 0 to pixel logits (2, 0) and code 1 to (0, -1)
    vae = CategoricalVAE(2, num_latents=1, num_categories=2, hidden_dims=(), estimator="identity_st", prior=prior)
    with torch.no_grad():
        vae.encoder[0].weight.zero_()
        vae.encoder[0].bias.copy_(torch.tensor([0.75, 0.25]).log())
        vae.decoder[0].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]]))
        vae.decoder[0].bias.zero_()
        if prior == "learned":
            vae.prior_logits.copy_(torch.tensor([0.4, 0.6]).log())
    x = torch.tensor([[1.0, 0.0]])
    vae.train()  # identity ST: z = argmax = code 0
    losses, metrics = vae.step(x)
    recon = _softplus(-2.0) + _softplus(0.0)  # -log p(x | code 0): BCE of logits (2, 0) at (1, 0)
    p = (0.4, 0.6) if prior == "learned" else (0.5, 0.5)
    kl = 0.75 * math.log(0.75 / p[0]) + 0.25 * math.log(0.25 / p[1])
    assert metrics["recon"].item() == pytest.approx(recon, abs=1e-5)
    assert metrics["kl"].item() == pytest.approx(kl, abs=1e-5)
    assert losses.item() == pytest.approx(recon + kl, abs=1e-5)
    # the exact ELBO, E_q[log p(x|z) + log p(z) - log q(z|x)] over both codes, is the mean of the
    # importance log-weights; it equals -(E_q recon + KL)
    recon1 = _softplus(0.0) + _softplus(-1.0)  # code 1: logits (0, -1) at (1, 0)
    elbo = -(0.75 * recon + 0.25 * recon1 + kl)
    torch.manual_seed(0)
    weights = vae.log_weights(x, 40000, chunk_size=10000)
    assert weights.mean().item() == pytest.approx(elbo, abs=4 * weights.std().item() / 200)


@pytest.mark.parametrize("train", [True, False])
def test_q_at_tau_f_is_the_elbo_of_the_tempered_distribution(train):
    # the same one-latent model as above, encoder logits log(0.75, 0.25), at tau = 0.5: with
    # q_at_tau_f, q(z|x) = softmax(l / 0.5) = (0.9, 0.1) in training (where softmax_st samples it)
    # and in evaluation, and the KL is taken of it; without, the KL stays at (0.75, 0.25)
    def make(q_at_tau_f):
        vae = CategoricalVAE(2, num_latents=1, num_categories=2, hidden_dims=(), estimator="softmax_st", tau=0.5,
                             q_at_tau_f=q_at_tau_f)
        with torch.no_grad():
            vae.encoder[0].weight.zero_()
            vae.encoder[0].bias.copy_(torch.tensor([0.75, 0.25]).log())
            vae.decoder[0].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]]))
            vae.decoder[0].bias.zero_()
        return vae.train(train)

    x = torch.tensor([[1.0, 0.0]]).expand(40000, 2)
    recon = (_softplus(-2.0) + _softplus(0.0), _softplus(0.0) + _softplus(-1.0))  # -log p(x | code 0 / 1)
    torch.manual_seed(0)
    losses, metrics = make(True).step(x)
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert metrics["kl"].item() == pytest.approx(kl, abs=1e-5)
    neg_elbo = 0.9 * recon[0] + 0.1 * recon[1] + kl
    assert losses.mean().item() == pytest.approx(neg_elbo, abs=4 * losses.std().item() / 200)
    _, metrics = make(False).step(x)
    assert metrics["kl"].item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-5)
    if not train:  # the importance-weighted bound samples the same q: its mean log-weight is the ELBO
        weights = make(True).log_weights(x[:1], 40000, chunk_size=10000)
        assert weights.mean().item() == pytest.approx(-neg_elbo, abs=4 * weights.std().item() / 200)


@pytest.mark.parametrize("bernoulli", [False, True])
def test_q_at_tau_f_is_slope_annealed_st(bernoulli):
    # slope annealing: ST at temperature tau with q = softmax(l / tau) is plain ST (tau = 1) of a
    # model whose logits are l / tau: the same samples, the same loss, and the gradient of the
    # encoder's bias scaled by 1 / tau (the chain rule through l / tau), the KL's part included
    k = 2 if bernoulli else 3

    def make(tau, scale):
        torch.manual_seed(0)
        vae = CategoricalVAE(6, num_latents=4, num_categories=k, hidden_dims=(5,), bernoulli=bernoulli,
                             estimator="softmax_st", tau=tau, q_at_tau_f=tau != 1.0)
        with torch.no_grad():
            vae.encoder[-1].weight.mul_(scale)
            vae.encoder[-1].bias.mul_(scale)
        return vae

    x = torch.rand(16, 6).round()
    tempered, plain = make(0.5, 1.0), make(1.0, 2.0)
    torch.manual_seed(1)
    loss_t = tempered.compute_loss(x)[0]
    torch.manual_seed(1)
    loss_p = plain.compute_loss(x)[0]
    assert loss_t.item() == pytest.approx(loss_p.item(), rel=1e-6)
    loss_t.backward()
    loss_p.backward()
    torch.testing.assert_close(tempered.encoder[-1].bias.grad, 2.0 * plain.encoder[-1].bias.grad)
    assert bool(plain.encoder[-1].bias.grad.abs().sum() > 0)


@pytest.mark.parametrize("num_categories", [None, 3])
def test_q_at_tau_f_evaluates_the_structured_network_at_tau_f(num_categories):
    # evaluation samples p(h|x) at tau_f with q_at_tau_f: the network at tau 0.5 evaluates like the
    # one at tau 1 whose layers' logits are doubled (same draws), and differs without the option
    def make(tau, scale, q_at_tau_f):
        torch.manual_seed(0)
        net = StructuredOutputNetwork(6, 6, hidden_dims=(6, 6), num_categories=num_categories, estimator="softmax_st",
                                      tau=tau, q_at_tau_f=q_at_tau_f)
        with torch.no_grad():
            for linear in net.linears:
                linear.weight.mul_(scale)
                linear.bias.mul_(scale)
        return net.eval()

    batch = torch.rand(64, 12).round()
    torch.manual_seed(1)
    tempered = make(0.5, 1.0, True).log_weights(batch, 8)
    torch.manual_seed(1)
    plain = make(1.0, 2.0, False).log_weights(batch, 8)
    torch.manual_seed(1)
    at_one = make(0.5, 1.0, False).log_weights(batch, 8)
    torch.testing.assert_close(tempered, plain)
    assert not torch.allclose(tempered, at_one)


def test_q_at_tau_f_needs_a_tempered_sample():
    with pytest.raises(ValueError, match="q_at_tau_f.*exact sample at tau_f"):
        CategoricalVAE(4, num_latents=2, num_categories=3, estimator="gumbel_softmax", tau=0.5, q_at_tau_f=True)
    with pytest.raises(ValueError, match="tau_f > 0"):
        CategoricalVAE(4, num_latents=2, num_categories=3, estimator="decoupled_st", tau_f=0.0, tau_b=1.0,
                       q_at_tau_f=True)
    with pytest.raises(ValueError, match="q_at_tau_f.*exact sample at tau_f"):
        StructuredOutputNetwork(4, 4, hidden_dims=(6,), estimator="reinmax", tau=1.0, q_at_tau_f=True)
    assert [n for n, e in LF.ESTIMATORS.items() if e.tempered_sample] == ["decoupled_st", "softmax_st"]


def test_only_the_learned_prior_has_parameters(tiny_vae):
    assert tiny_vae(prior="uniform").prior_logits is None
    vae = tiny_vae(prior="learned")
    vae.compute_loss(torch.rand(8, 4).round())[0].backward()
    assert vae.prior_logits.shape == (2, 3) and bool(vae.prior_logits.grad.abs().sum() > 0)


def test_relaxed_gumbel_softmax_keeps_the_categorical_kl(tiny_vae):
    vae = tiny_vae(estimator="gumbel_softmax", tau=0.5)
    x = torch.rand(6, 4).round()
    _, metrics = vae.train().step(x)
    assert metrics["kl"].item() == pytest.approx(LF.categorical_kl(vae.encode(x)).sum(-1).mean().item(), abs=1e-6)


@pytest.mark.parametrize("estimator", sorted(n for n, e in LF.ESTIMATORS.items() if e.has_categorical))
def test_every_categorical_estimator_trains_the_vae(tiny_vae, estimator):
    vae = tiny_vae(estimator=estimator, tau=None, tau_f=0.5 if LF.ESTIMATORS[estimator].num_temperatures else None)
    loss, metrics = vae.compute_loss(torch.rand(8, 4).round())
    loss.backward()
    grads = [p.grad for p in vae.encoder.parameters()]
    assert torch.isfinite(loss) and all(g is not None and bool(g.abs().sum() > 0) for g in grads)
    assert set(metrics) == {"loss", "recon", "kl"}


@pytest.mark.parametrize("estimator", sorted(n for n, e in LF.ESTIMATORS.items() if e.has_binary and not e.signed))
def test_every_binary_estimator_trains_the_bernoulli_vae(estimator):
    spec = LF.ESTIMATORS[estimator]
    vae = CategoricalVAE(4, num_latents=3, num_categories=2, hidden_dims=(5,), bernoulli=True, estimator=estimator,
                         tau_f=0.5 if spec.num_temperatures else None)
    loss, _ = vae.compute_loss(torch.rand(8, 4).round())
    loss.backward()
    assert torch.isfinite(loss) and bool(vae.encoder[0].weight.grad.abs().sum() > 0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_categories"):
        CategoricalVAE(4, num_latents=2, num_categories=3, bernoulli=True)
    with pytest.raises(ValueError, match="prior"):
        CategoricalVAE(4, prior="gaussian")
    with pytest.raises(ValueError, match="test_num_samples"):
        CategoricalVAE(4, test_num_samples=-1)
    with pytest.raises(ValueError, match="num_categories"):
        StructuredOutputNetwork(4, 4, hidden_dims=(6,), num_categories=4)
    with pytest.raises(ValueError, match="train_num_samples"):
        StructuredOutputNetwork(4, 4, hidden_dims=(6,), estimator="reinforce", train_num_samples=2)
    with pytest.raises(ValueError, match="input_dim \\+ output_dim"):
        StructuredOutputNetwork(4, 4, hidden_dims=(6,)).step(torch.rand(2, 9))


# --------------------------------------------------------------------------- the bound vs enumeration
def _exact_vae_nll(vae: CategoricalVAE, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) ``(B,)`` by summing p(x|z) p(z) over all k^L codes (uniform prior)."""
    k, L = vae.num_categories, vae.num_latents
    terms = []
    for code in itertools.product(range(k), repeat=L):
        z = F.one_hot(torch.tensor(code), k).float().expand(x.shape[0], L, k)
        log_px = -F.binary_cross_entropy_with_logits(vae.decode(z), x, reduction="none").sum(-1)
        terms.append(log_px - L * math.log(k))
    return -torch.logsumexp(torch.stack(terms), 0)


def test_importance_weighted_bound_approaches_exact_nll(tiny_vae):
    vae = tiny_vae().eval()
    with torch.no_grad():  # q(z|x) = (0.79, 0.11, 0.11) per latent whatever x: far from the posterior
        vae.encoder[-1].weight.zero_()
        vae.encoder[-1].bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0, 2.0]))
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    with torch.no_grad():
        exact = _exact_vae_nll(vae, x)
    torch.manual_seed(1)
    gaps = {}
    for m in (1, 10, 1000):
        # 200 independent bounds of each example: their mean is E[bound]
        repeats = torch.stack([vae.log_weights(x, m, chunk_size=250) for _ in range(200 if m < 1000 else 20)])
        bounds = torch.logsumexp(repeats, 1) - math.log(m)  # (R, B): log p lower bounds
        nll = -bounds.mean(0)
        se = bounds.std(0) / math.sqrt(bounds.shape[0])
        gaps[m] = (nll - exact).max().item()
        assert bool((nll >= exact - 4 * se - 1e-6).all()), f"m={m}: E[bound] above log p(x)"
    # the gap E[-bound] + log p(x) shrinks with m: about 0.9, 0.3, 0.02 nats here
    assert gaps[1] > gaps[10] > gaps[1000]
    assert gaps[1000] < 0.05 < 0.5 < gaps[1]


def test_structured_network_bound_against_enumeration():
    torch.manual_seed(0)
    net = StructuredOutputNetwork(3, 2, hidden_dims=(2,), estimator="softmax_st", tau=1.0, test_num_samples=0).eval()
    batch = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0]])
    x, y = batch[:, :3], batch[:, 3:]
    with torch.no_grad():
        h_logits = net.linears[0](x)  # p(h | x): two Bernoulli units
        terms = []
        for code in itertools.product((0.0, 1.0), repeat=2):
            h = torch.tensor(code).expand(2, 2)
            log_ph = LF.bernoulli_log_prob(h_logits, h).sum(-1)
            log_py = -F.binary_cross_entropy_with_logits(net.head(h), y, reduction="none").sum(-1)
            terms.append(log_ph + log_py)
        exact = -torch.logsumexp(torch.stack(terms), 0)
    torch.manual_seed(2)
    metric = ImportanceWeightedNLL()
    metric.update(net.log_weights(batch, 20000, chunk_size=5000))
    assert metric.compute().item() == pytest.approx(exact.mean().item(), abs=0.01)
    # m = 1 (the training objective) is an upper bound of -log p(y | x) in expectation
    single = torch.stack([net.step(batch)[0] for _ in range(400)]).mean(0)
    assert bool((single >= exact - 0.05).all())


def test_test_step_logs_the_bound(tiny_vae, make_trainer, binary_images, loader):
    vae = tiny_vae(test_num_samples=500, test_chunk_size=200)
    data = binary_images(n=16, d=4)
    trainer = make_trainer()
    torch.manual_seed(3)
    logged = trainer.test(vae, loader(data, 8), verbose=False)[0]
    with torch.no_grad():
        exact = _exact_vae_nll(vae, data.tensors[0]).mean().item()
    assert logged["test/nll"] == pytest.approx(exact, abs=0.05)
    assert logged["test/loss"] > logged["test/nll"] - 0.05  # -ELBO >= -log p(x) (in expectation)


def test_test_objective_is_the_relaxed_training_loss_of_gumbel_softmax(tiny_vae, make_trainer, loader):
    # relaxed Gumbel-Softmax at tau 0.5: test/objective is E_g[BCE(decode(softmax((l + g) / tau)), x)] + KL,
    # computed here by hand with our own Gumbel draws; test/loss draws exact samples instead
    vae = tiny_vae(estimator="gumbel_softmax", tau=0.5, test_num_samples=0)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    with torch.no_grad():
        vae.decoder[0].weight.mul_(20.0)  # a decoder that tells relaxed codes from one-hot ones
        logits = vae.encode(x)  # (2, 2, 3)
        draws = []
        for _ in range(50):
            g = -torch.log(-torch.log(torch.rand(4000, *logits.shape).clamp_min(1e-12)))
            z = torch.softmax((logits + g) / 0.5, -1)
            recon = F.binary_cross_entropy_with_logits(vae.decode(z), x.expand(4000, 2, 4), reduction="none").sum(-1)
            draws.append(recon)
        kl = LF.categorical_kl(logits).sum(-1)  # (2,)
        relaxed = (torch.cat(draws).mean(0) + kl).mean().item()
        exact = torch.stack([vae.eval().step(x)[0] for _ in range(2000)]).mean().item()  # eval: exact samples
    data = torch.utils.data.TensorDataset(x.repeat(2000, 1))
    torch.manual_seed(0)
    logged = make_trainer().test(vae, loader(data, 1000), verbose=False)[0]
    # 4000 single-sample estimates: the standard error is below 0.05 nats here
    assert logged["test/objective"] == pytest.approx(relaxed, abs=0.1)
    assert logged["test/loss"] == pytest.approx(exact, abs=0.1)
    assert abs(relaxed - exact) > 0.3  # the two measures differ: the relaxed one is not the -ELBO
    for mode in (False, True):  # training_objective leaves the module's mode as it found it
        vae.train(mode).training_objective(x)
        assert vae.training is mode and all(m.training is mode for m in vae.modules())
    vae = tiny_vae(estimator="gumbel_softmax", tau=0.5, test_num_samples=0, test_objective=False)
    assert "test/objective" not in make_trainer().test(vae, loader(data, 1000), verbose=False)[0]


def test_importance_weighted_nll_metric_accumulates_like_the_functional():
    w = torch.randn(7, 10, dtype=torch.float64)
    metric = ImportanceWeightedNLL()
    metric.update(w[:, :3])
    metric.update(w[:, 3:])
    by_hand = -(torch.logsumexp(w, 0) - math.log(7)).mean()
    torch.testing.assert_close(metric.compute(), by_hand)
    torch.testing.assert_close(importance_weighted_nll(w), by_hand)
    with pytest.raises(ValueError, match="log_weights"):
        importance_weighted_nll(torch.zeros(3))


# --------------------------------------------------------------------------- binarised MNIST
@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory, make_mnist_layout):
    root = str(tmp_path_factory.mktemp("mnist"))
    make_mnist_layout(root, "MNIST", n_train=40, n_test=16)
    return root


def _images(loader):
    return torch.cat([x for x, _ in loader])


def test_fixed_binarization_is_identical_across_instances_and_ranks(mnist_dir):
    out = []
    for global_seed in (0, 1):  # another process or rank: another global RNG state
        torch.manual_seed(global_seed)
        dm = MNISTDataModule(data_dir=mnist_dir, batch_size=8, val_size=8, flatten=True, shuffle=False,
                             binarization="fixed", binarization_seed=5)
        dm.setup("fit")
        dm.setup("test")
        out.append([_images(dm.train_dataloader()), _images(dm.val_dataloader()), _images(dm.test_dataloader())])
    for a, b in zip(*out):
        assert torch.equal(a, b)
        assert set(a.unique().tolist()) == {0.0, 1.0}
    # another seed is another draw
    dm = MNISTDataModule(data_dir=mnist_dir, batch_size=8, val_size=8, flatten=True, shuffle=False,
                         binarization="fixed", binarization_seed=6)
    dm.setup("fit")
    assert not torch.equal(_images(dm.train_dataloader()), out[0][0])


def test_dynamic_binarization_draws_again_each_epoch(mnist_dir):
    dm = MNISTDataModule(data_dir=mnist_dir, batch_size=8, val_size=8, flatten=True, shuffle=False,
                         binarization="dynamic", binarization_seed=5)
    dm.setup("fit")
    first, second = _images(dm.train_dataloader()), _images(dm.train_dataloader())
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    # the pixel means follow the grey values: P(1) = x / 255 over the two draws
    grey = MNISTDataModule(data_dir=mnist_dir, batch_size=8, val_size=8, flatten=True, shuffle=False)
    grey.setup("fit")
    g = _images(grey.train_dataloader())
    assert ((first + second) / 2 - g).abs().mean().item() < 0.3
    # validation uses the fixed draw
    fixed = MNISTDataModule(data_dir=mnist_dir, batch_size=8, val_size=8, flatten=True, shuffle=False,
                            binarization="fixed", binarization_seed=5)
    fixed.setup("fit")
    assert torch.equal(_images(dm.val_dataloader()), _images(fixed.val_dataloader()))


def test_binarization_arguments_are_checked():
    with pytest.raises(ValueError, match="binarization"):
        MNISTDataModule(binarization="always")
    with pytest.raises(ValueError, match="binarize_thresholds"):
        MNISTDataModule(binarization="fixed", binarize_thresholds=2)


# --------------------------------------------------------------------------- annealing
def test_paper_annealing_floor_and_update_interval(make_trainer, tiny_vae, binary_images, loader, temperature_recorder):
    rate, every = 0.05, 4
    sched = TemperatureScheduler(tau={"kind": "exp_decay", "start": 1.0, "rate": rate, "floor": 0.5, "every": every})
    recorder = temperature_recorder()
    trainer = make_trainer(max_steps=30, callbacks=[sched, recorder])
    trainer.fit(tiny_vae(estimator="gumbel_softmax_st"), loader(binary_images(n=240, d=4), 8))
    assert len(recorder.rows) == 30
    for step, tau_f, tau_b in recorder.rows:
        expected = max(0.5, math.exp(-rate * every * (step // every)))
        assert tau_f == pytest.approx(expected, rel=1e-6) and tau_b == pytest.approx(expected, rel=1e-6)
    assert recorder.rows[-1][1] == pytest.approx(0.5)  # the floor is reached (exp(-0.05 * 28) < 0.5)


def test_exp_decay_needs_a_rate():
    with pytest.raises(ValueError, match="rate"):
        TemperatureScheduler(tau={"kind": "exp_decay", "start": 1.0})
    with pytest.raises(ValueError, match="every"):
        TemperatureScheduler(tau={"kind": "linear", "start": 1.0, "end": 0.5, "every": 0})


# --------------------------------------------------------------------------- recipes
RECIPES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


def test_testing_a_checkpoint_keeps_its_model_but_applies_command_line_model_arguments(mnist_dir, fast_args, tmp_path):
    # trained with 4 latents and m = 1000 in its hyperparameters; tested with the recipe (20 latents) and
    # --model.test_num_samples=20: the checkpoint's shape wins over the config file, the command line over
    # the checkpoint (Lightning alone would test with m = 1000)
    args = ["--config", os.path.join(RECIPES, "vae_mnist.yaml"), *fast_args(mnist_dir, str(tmp_path))]
    fit = cli_main(["fit", *args, "--model.num_latents=4"])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    cli = cli_main(["test", *args, f"--ckpt_path={ckpt}", "--trainer.limit_test_batches=1",
                    "--model.test_num_samples", "20", "--model.init_args.test_chunk_size=10"])
    assert cli.model.num_latents == 4 and cli.model.test_num_samples == 20 and cli.model.test_chunk_size == 10
    assert torch.isfinite(cli.trainer.callback_metrics["test/nll"])
    cli = cli_main(["test", *args, f"--ckpt_path={ckpt}", "--trainer.limit_test_batches=1"])
    assert cli.model.num_latents == 4 and cli.model.test_num_samples == 1000  # the checkpoint's values


@pytest.mark.parametrize(
    "recipe,overrides,extra,estimator",
    [
        ("vae_mnist.yaml", [], [], "gumbel_softmax"),
        ("vae_mnist_bernoulli.yaml", ["gumbel_softmax.yaml"], [], "gumbel_softmax"),
        ("structured_prediction_mnist.yaml", [], [], "gumbel_softmax"),
        ("structured_prediction_mnist.yaml", ["reinforce.yaml"], ["--model.num_categories=10"], "reinforce"),
        ("vae_mnist.yaml", ["reinmax.yaml"], ["--model.num_categories=8", "--model.num_latents=4"], "reinmax"),
        ("vae_mnist.yaml", ["gumbel_rao.yaml"], [], "gumbel_rao"),
        ("structured_prediction_mnist.yaml", ["decoupled_st.yaml", "anneal_tau_b.yaml"],
         ["--model.tau_f=1.0", "--model.tau_b=1.0"], "decoupled_st"),
    ],
)
def test_recipe_fits_and_tests_the_bound(recipe, overrides, extra, estimator, mnist_dir, fast_args, tmp_path):
    configs = ["--config", os.path.join(RECIPES, recipe)]
    for o in overrides:  # an estimator file, then constant_temperature.yaml or anneal_tau_b.yaml
        configs += ["--config", os.path.join(RECIPES, "estimators", o) if o.replace(".yaml", "") in LF.ESTIMATORS
                    else os.path.join(RECIPES, o)]
    if len(overrides) == 1:
        configs += ["--config", os.path.join(RECIPES, "constant_temperature.yaml")]
    args = configs + fast_args(mnist_dir, str(tmp_path)) + extra
    cli = cli_main(["fit", *args])
    assert cli.trainer.global_step == 3 and cli.model.hparams.estimator == estimator
    assert torch.isfinite(cli.trainer.callback_metrics["val/loss"])
    # the recipe anneals tau; constant_temperature.yaml drops it; anneal_tau_b.yaml anneals tau_b only
    scheduled = [sorted(c.temperatures_at(0, 1)) for c in cli.trainer.callbacks if isinstance(c, TemperatureScheduler)]
    assert scheduled == ([["tau"]] if not overrides else [] if len(overrides) == 1 else [["tau_b"]])
    if "anneal_tau_b.yaml" in overrides:
        assert all(m.temperatures()[0] == 1.0 for m in cli.model.discrete_modules())  # exact forward samples
    assert cli.datamodule.binarization == "fixed"
    cli = cli_main(["test", *args, "--trainer.limit_test_batches=1", "--model.test_num_samples=20"])
    metrics = cli.trainer.callback_metrics
    # the m = 20 bound is at most the one-sample objective, up to Monte Carlo noise
    assert torch.isfinite(metrics["test/nll"]) and float(metrics["test/nll"]) <= float(metrics["test/loss"]) + 5.0

"""The task models and the DiscreteModule base: they learn small tasks with a known solution."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_discrete.models import CategoricalAutoencoder, DiscreteModule, StochasticBinaryNetwork
from lightning_discrete.nn import BinaryBottleneck, CategoricalBottleneck

README = Path(__file__).resolve().parents[1] / "README.md"


def _fit(model, dataset, steps, batch_size=64):
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    trainer.fit(model, loader)
    return model.eval()


def _adam(lr):
    return lambda params: torch.optim.Adam(params, lr=lr)


# 4-bit parity: a 1-hidden-layer binary network can represent it, chance is 0.5
PARITY_X = torch.tensor([[int(b) for b in f"{i:04b}"] for i in range(16)]).float() * 2 - 1
PARITY_Y = ((PARITY_X > 0).sum(1) % 2).long()


def _parity_accuracy(model) -> float:
    with torch.no_grad():
        return (model(PARITY_X).argmax(-1) == PARITY_Y).float().mean().item()


SBN_CASES = [
    ("decoupled_st", dict(tau_f=0.3, tau_b=1.0), 1.0),
    ("identity_st", {}, 1.0),
    ("softmax_st", dict(tau=0.3), 1.0),
    ("gumbel_softmax_st", dict(tau=0.5), 1.0),
    ("reinforce", dict(num_samples=4), 0.75),
    ("disarm", {}, 0.75),
]


@pytest.mark.parametrize("estimator,kwargs,min_acc", SBN_CASES, ids=[c[0] for c in SBN_CASES])
def test_binary_network_learns_parity(estimator, kwargs, min_acc):
    torch.manual_seed(0)
    model = StochasticBinaryNetwork(4, [64], 2, estimator=estimator, optimizer=_adam(3e-2), **kwargs)
    assert _parity_accuracy(model.eval()) < min_acc  # the threshold is not met untrained
    dataset = torch.utils.data.TensorDataset(PARITY_X.repeat(32, 1), PARITY_Y.repeat(32))
    _fit(model.train(), dataset, 500)
    assert _parity_accuracy(model) >= min_acc


SOURCE = torch.randint(0, 2, (16, 32), generator=torch.Generator().manual_seed(123)).float()

AE_CASES = [
    ("decoupled_st", dict(tau_f=1.0, tau_b=0.5), 1.0),
    ("identity_st", {}, 1.0),
    ("softmax_st", dict(tau=1.0), 1.0),
    ("gumbel_softmax_st", dict(tau=1.0), 1.0),
    ("reinforce", dict(num_samples=4), 0.5),
]


def _exact_reconstructions(model) -> float:
    with torch.no_grad():
        return ((model(SOURCE) > 0).float() == SOURCE).all(1).float().mean().item()


@pytest.mark.parametrize("estimator,kwargs,min_exact", AE_CASES, ids=[c[0] for c in AE_CASES])
def test_autoencoder_reconstructs_16_symbol_source(estimator, kwargs, min_exact):
    torch.manual_seed(0)
    model = CategoricalAutoencoder(32, 4, 8, [64], estimator=estimator, optimizer=_adam(1e-2), **kwargs)
    assert _exact_reconstructions(model.eval()) < min_exact
    _fit(model.train(), torch.utils.data.TensorDataset(SOURCE.repeat(32, 1)), 600)
    assert _exact_reconstructions(model) >= min_exact


def test_estimator_and_temperatures_reach_every_bottleneck():
    model = StochasticBinaryNetwork(8, [6, 5, 4], 3, estimator="decoupled_st", tau_f=0.1, tau_b=0.7)
    bottlenecks = list(model.discrete_modules())
    assert len(bottlenecks) == 3 and all(isinstance(b, BinaryBottleneck) for b in bottlenecks)
    assert all(float(b.tau_f) == pytest.approx(0.1) and float(b.tau_b) == pytest.approx(0.7) for b in bottlenecks)
    model.set_temperature(tau_f=2.0)
    assert all(float(b.tau_f) == 2.0 and float(b.tau_b) == pytest.approx(0.7) for b in bottlenecks)
    ae = CategoricalAutoencoder(16, 2, 4, [8], estimator="gumbel_softmax_st", tau=0.5)
    (b,) = ae.discrete_modules()
    assert b.estimator == "gumbel_softmax_st" and float(b.tau_f) == float(b.tau_b) == 0.5


def test_hyperparameters_saved_and_checkpoint_round_trip(tmp_path):
    with pytest.warns(FutureWarning, match="'decoupled_st'"):  # an old name still works
        model = CategoricalAutoencoder(16, 2, 4, [8], estimator="decoupled", tau_f=2.0, tau_b=0.5)
    assert model.hparams["num_latents"] == 2 and model.hparams["tau_f"] == 2.0
    # every estimator setting is saved, the estimator under its current name
    assert model.hparams["estimator"] == "decoupled_st" and model.hparams["eval_mode"] == "argmax"
    assert "optimizer" not in model.hparams
    model.bottleneck.set_temperature(tau_f=1.5)
    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(model, torch.utils.data.DataLoader(torch.rand(8, 16), batch_size=8))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = CategoricalAutoencoder.load_from_checkpoint(tmp_path / "m.ckpt")
    assert float(loaded.bottleneck.tau_f) == 1.5  # buffers live in the state_dict
    x = torch.rand(5, 16)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


def test_score_function_batch_is_repeated_sample_major():
    model = StochasticBinaryNetwork(4, [3], 2, estimator="reinforce", num_samples=3)
    seen = {}

    def step(batch):
        seen["x"] = batch[0]
        return torch.zeros(batch[0].shape[0], requires_grad=True) + model(batch[0]).sum(-1) * 0, {}

    model.step = step
    x = torch.randn(5, 4)
    loss, metrics = model.train().compute_loss((x, torch.zeros(5, dtype=torch.long)))
    assert seen["x"].shape == (15, 4)
    torch.testing.assert_close(seen["x"][5:10], x)
    assert torch.isfinite(loss) and "loss" in metrics


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(estimator="nope"), "unknown `estimator` 'nope'"),
        (dict(estimator="reinforce", num_samples=1), "num_samples"),
        (dict(estimator="decoupled_st", tau_f=-1.0), "tau_f"),
        (dict(estimator="decoupled_st", tau_b=0.0), "tau_b"),
        (dict(hidden_dims=[0]), "hidden_dims"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StochasticBinaryNetwork(**kwargs)


def test_categorical_only_estimator_rejected_for_binary_units_and_vice_versa():
    assert StochasticBinaryNetwork(estimator="disarm").hidden[1].estimator == "disarm"
    with pytest.raises(ValueError, match="no categorical form"):
        CategoricalAutoencoder(estimator="disarm")
    with pytest.raises(ValueError, match="no categorical form"):
        CategoricalAutoencoder(estimator="sign_st")


def _run_readme_example(name: str) -> dict:
    match = re.search(rf"<!-- readme-example: {name} -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, f"README lost its {name} example"
    namespace: dict = {}
    exec(compile(match.group(1), str(README), "exec"), namespace)
    return namespace


def test_readme_quickstart_runs():
    ns = _run_readme_example("quickstart")
    z, codes, logits = ns["z"], ns["codes"], ns["logits"]
    for out in (z, codes):
        assert out.shape == (32, 4, 8) and torch.equal(out.sum(-1), torch.ones(32, 4))
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert float(ns["bottleneck"].tau_f) == 1.0 and float(ns["bottleneck"].tau_b) == 0.5


def test_readme_subclass_example_trains():
    namespace = _run_readme_example("subclass")
    assert issubclass(namespace["CodeClassifier"], DiscreteModule)
    assert isinstance(namespace["model"].code, CategoricalBottleneck)
    assert namespace["accuracy"] >= 0.9


def test_default_adam_is_fused_where_it_can_be_and_updates_like_the_plain_adam():
    from lightning_discrete.models.base import default_adam

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    twin.load_state_dict(net.state_dict())
    fused, plain = default_adam(net.parameters()), torch.optim.Adam(twin.parameters(), lr=1e-3)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    start = net[0].weight.detach().clone()
    for _ in range(50):
        for model, opt in ((net, fused), (twin, plain)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert (net[0].weight - start).abs().max() > 1e-3  # it trained
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # parameter groups count too; a tensor fused Adam cannot take (meta device) turns fusing off
    groups = [{"params": [torch.nn.Parameter(torch.zeros(3))]}, {"params": [torch.nn.Parameter(torch.zeros(2))]}]
    assert default_adam(groups).defaults["fused"] is True
    assert not default_adam([torch.nn.Parameter(torch.zeros(3, device="meta"))]).defaults["fused"]

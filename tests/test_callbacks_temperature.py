import math

import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_discrete.callbacks import Schedule, TemperatureScheduler, schedule_value


@pytest.mark.parametrize(
    "kind, step, expected",
    [
        ("constant", 37, 2.0),
        ("linear", 0, 2.0),
        ("linear", 25, 1.625),
        ("linear", 100, 0.5),
        ("linear", 250, 0.5),
        ("exponential", 50, 1.0),  # geometric mean of 2 and 0.5
        ("exponential", 100, 0.5),
        ("cosine", 0, 2.0),
        ("cosine", 50, 1.25),
        ("cosine", 100, 0.5),
        ("step", 9, 2.0),  # blocks of 10 steps of the exponential schedule
        ("step", 10, 2.0 * 0.25**0.1),
        ("step", 55, 2.0 * 0.25**0.5),
        ("step", 100, 0.5),
    ],
)
def test_schedule_values(kind, step, expected):
    assert schedule_value(kind, 2.0, 0.5, step, 100) == pytest.approx(expected, rel=1e-12)
    assert Schedule(kind, 2.0, 0.5).value(step, 100) == pytest.approx(expected, rel=1e-12)


def test_schedule_cosine_quarter_and_step_gamma_and_total():
    assert schedule_value("cosine", 1.0, 0.0, 25, 100) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    # StepLR-like: x 0.5 every 3 steps, floored at end
    vals = [schedule_value("step", 1.0, 0.2, s, 100, step_size=3, gamma=0.5) for s in (0, 2, 3, 6, 9, 60)]
    assert vals == [1.0, 1.0, 0.5, 0.25, 0.2, 0.2]
    # rising schedule, own total wins over the run length
    assert Schedule("linear", 0.5, 1.5, total=10).value(5, 1000) == pytest.approx(1.0)
    assert schedule_value("linear", 1.0, 3.0, 7, 0) == 3.0  # empty run: final value


def test_schedule_errors():
    with pytest.raises(ValueError, match="kind"):
        Schedule("warp", 1.0)
    with pytest.raises(ValueError, match="start"):
        schedule_value("exponential", 0.0, 1.0, 1, 10)
    with pytest.raises(ValueError, match="not both"):
        TemperatureScheduler(tau=1.0, tau_f=1.0)
    with pytest.raises(ValueError, match="at least one"):
        TemperatureScheduler()
    with pytest.raises(ValueError, match="interval"):
        TemperatureScheduler(tau_f=1.0, interval="batch")


def test_yaml_builds_scheduler():
    jsonargparse = pytest.importorskip("jsonargparse")
    from typing import List

    from lightning.pytorch import Callback

    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--callbacks", type=List[Callback])
    cfg = parser.parse_string(
        """
callbacks:
  - class_path: lightning_discrete.callbacks.TemperatureScheduler
    init_args:
      tau_f: {kind: exponential, start: 1.0, end: 0.1}
      tau_b: {kind: step, start: 2.0, end: 0.5, step_size: 10, gamma: 0.5}
      interval: epoch
"""
    )
    (cb,) = parser.instantiate(cfg).callbacks
    assert isinstance(cb, TemperatureScheduler)
    assert cb.tau_f == Schedule("exponential", 1.0, 0.1)
    assert cb.tau_b == Schedule("step", 2.0, 0.5, step_size=10, gamma=0.5)
    assert cb.interval == "epoch"


def test_scheduler_sets_every_bottleneck_and_logs(make_trainer, tiny_binary_net, temperature_recorder, loader, classification_data):
    seed_everything(0)
    model = tiny_binary_net()
    sched = TemperatureScheduler(tau_f={"kind": "linear", "start": 1.0, "end": 0.25}, tau_b=2.0)
    rec = temperature_recorder()
    trainer = make_trainer(max_epochs=2, callbacks=[sched, rec], accumulate_grad_batches=2)
    trainer.fit(model, loader(classification_data(32), 4))  # 8 batches/epoch, 4 optimizer steps
    total = trainer.estimated_stepping_batches
    assert total == 8
    # each optimizer step spans 2 micro-batches; values depend on global_step only
    assert [r[0] for r in rec.rows] == [s for s in range(8) for _ in range(2)]
    for step, tf, tb in rec.rows:
        assert tf == pytest.approx(1.0 - 0.75 * step / total, abs=1e-7)
        assert tb == 2.0
    for m in model.discrete_modules():
        assert float(m.tau_f) == pytest.approx(1.0 - 0.75 * 7 / 8) and float(m.tau_b) == 2.0
    assert float(trainer.callback_metrics["temperature/tau_f"]) == pytest.approx(1.0 - 0.75 * 7 / 8)
    assert float(trainer.callback_metrics["temperature/tau_b"]) == 2.0


def test_per_step_values_are_logged_on_logging_steps_and_the_last(
    monkeypatch, make_trainer, tiny_binary_net, loader, classification_data
):
    """``self.log`` costs as much as a small training step: the scheduler calls it only on the
    steps Lightning writes (every ``log_every_n_steps``) and on an epoch's last batch, while it
    sets the temperature on every step."""
    import lightning_discrete.callbacks.temperature as temperature

    logged = []
    monkeypatch.setattr(temperature, "log_value", lambda pl_module, name, value, on_step: logged.append(
        (name, pl_module.trainer.global_step, float(value))))
    model = tiny_binary_net()
    sched = TemperatureScheduler(tau_f={"kind": "linear", "start": 1.0, "end": 0.0}, tau_b=2.0)
    trainer = make_trainer(max_epochs=1, log_every_n_steps=4, callbacks=[sched])
    trainer.fit(model, loader(classification_data(40), 4))  # 10 steps
    steps = [step for name, step, _ in logged if name == "temperature/tau_f"]
    assert steps == [3, 7, 9]
    assert [v for name, _, v in logged if name == "temperature/tau_f"] == pytest.approx([0.7, 0.3, 0.1])
    for m in model.discrete_modules():  # set on every step: the last step's value is in use
        assert float(m.tau_f) == pytest.approx(0.1)


def test_epoch_interval(make_trainer, tiny_binary_net, temperature_recorder, loader, classification_data):
    model = tiny_binary_net()
    rec = temperature_recorder()
    sched = TemperatureScheduler(tau={"kind": "exponential", "start": 1.0, "end": 0.25}, interval="epoch")
    make_trainer(max_epochs=3, callbacks=[sched, rec]).fit(model, loader(classification_data(16), 8))
    assert [r[1] for r in rec.rows] == pytest.approx([0.25 ** (e / 3) for e in (0, 0, 1, 1, 2, 2)])
    assert all(r[1] == r[2] for r in rec.rows)


def _two_schedulers():
    """tau_f per step and tau_b per epoch: two instances of one callback in one Trainer."""
    return [
        TemperatureScheduler(tau_f={"kind": "cosine", "start": 2.0, "end": 0.1}),
        TemperatureScheduler(tau_b={"kind": "exponential", "start": 3.0, "end": 0.5}, interval="epoch"),
    ]


def test_two_schedulers_log_only_their_own_temperature(make_trainer, tiny_binary_net, loader, classification_data):
    step_sched, epoch_sched = _two_schedulers()
    assert step_sched.state_key != epoch_sched.state_key
    trainer = make_trainer(max_epochs=2, callbacks=[step_sched, epoch_sched])
    trainer.fit(tiny_binary_net(), loader(classification_data(16), 8))  # 2 steps per epoch
    logged = trainer.callback_metrics
    assert float(logged["temperature/tau_f"]) == pytest.approx(schedule_value("cosine", 2.0, 0.1, 3, 4))
    assert float(logged["temperature/tau_b"]) == pytest.approx(schedule_value("exponential", 3.0, 0.5, 1, 2))
    alone = make_trainer(max_epochs=1, callbacks=[_two_schedulers()[0]])
    alone.fit(tiny_binary_net(), loader(classification_data(16), 8))
    assert "temperature/tau_f" in alone.callback_metrics and "temperature/tau_b" not in alone.callback_metrics


def _run(make_trainer, model, recorder, data, tmp_path, ckpt_path=None, save=False):
    callbacks = [*_two_schedulers(), recorder]
    if save:
        callbacks.append(ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}"))
    trainer = make_trainer(max_epochs=4, callbacks=callbacks, enable_checkpointing=save)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return recorder.rows


def test_resume_continues_exactly(
    tmp_path, make_trainer, tiny_binary_net, temperature_recorder, loader, classification_data
):
    seed_everything(0)
    model_full = tiny_binary_net()
    full = _run(make_trainer, model_full, temperature_recorder(), loader(classification_data(24), 8), tmp_path, save=True)
    assert len(full) == 12 and len({r[1] for r in full}) == 12 and len({r[2] for r in full}) == 4
    model_resumed = tiny_binary_net()
    resumed = _run(make_trainer, model_resumed, temperature_recorder(), loader(classification_data(24), 8), tmp_path,
                   ckpt_path=str(tmp_path / "epoch=1.ckpt"))
    assert [r[0] for r in resumed] == list(range(6, 12))
    assert resumed == full[6:]  # bit-identical temperatures at every later step
    for a, b in zip(model_full.discrete_modules(), model_resumed.discrete_modules()):
        assert torch.equal(a.tau_f, b.tau_f) and torch.equal(a.tau_b, b.tau_b)

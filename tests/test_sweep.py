"""``lightning-discrete sweep``: grid and sequential protocols on tiny generated data (no network)."""

from __future__ import annotations

import csv
import json
import os
import statistics

import pytest

pytest.importorskip("optuna")
pytest.importorskip("torchvision")
pytest.importorskip("PIL")

from lightning_discrete.cli import main as cli_main_entry  # noqa: E402
from lightning_discrete.sweep import SweepConfig, choose, main, write_heatmap  # noqa: E402
from test_cli import BINARY, fast_args  # noqa: E402
from test_data import make_mnist_layout  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweepdata")
    make_mnist_layout(str(root), "FashionMNIST", n_train=40, n_test=16)
    return str(root)


def _overrides(data_dir, run_dir):
    # default_root_dir is set per trial by the sweep; the rest makes each trial 2 steps
    return [a for a in fast_args(data_dir, run_dir) if not a.startswith("--trainer.default_root_dir")] + [
        "--trainer.limit_train_batches=2"
    ]


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _best_by_mean(rows):
    groups = {}
    for r in rows:
        if r["state"] == "COMPLETE":
            groups.setdefault((float(r["tau_f"]), float(r["tau_b"])), []).append(float(r["value"]))
    return min(groups, key=lambda k: statistics.fmean(groups[k]))


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_grid_sweep_2x2(data_dir, tmp_path):
    out_dir = tmp_path / "grid"
    out = main(["--config", BINARY, "--protocol", "grid", "--tau_f", "0.1", "1.0", "--tau_b", "0.5", "1.0",
                "--output_dir", str(out_dir), "--quiet"] + _overrides(data_dir, str(tmp_path)))
    rows = _read(out["csv"])
    assert len(rows) == 4 and all(r["state"] == "COMPLETE" for r in rows)
    assert {(float(r["tau_f"]), float(r["tau_b"])) for r in rows} == {(0.1, 0.5), (0.1, 1.0), (1.0, 0.5), (1.0, 1.0)}
    best = out["best"]
    assert (best["tau_f"], best["tau_b"]) == _best_by_mean(rows)
    assert best["value"] == pytest.approx(min(float(r["value"]) for r in rows))
    assert os.path.isfile(out_dir / "heatmap.png") and _png_size(out_dir / "heatmap.png")[0] >= 2 * 72
    assert json.load(open(out_dir / "best.json"))["best"] == best
    assert str(out_dir / "sweep.db") in out["storage"]
    # every trial ran the recipe with its temperatures and kept its config
    for r in rows:
        saved = open(os.path.join(r["dir"], "config.yaml")).read()
        assert f"tau_f: {float(r['tau_f'])}" in saved and f"tau_b: {float(r['tau_b'])}" in saved
    # re-running the same command resumes the finished study: no new trials
    again = main(["--config", BINARY, "--protocol", "grid", "--tau_f", "0.1", "1.0", "--tau_b", "0.5", "1.0",
                  "--output_dir", str(out_dir), "--quiet"] + _overrides(data_dir, str(tmp_path)))
    assert len(_read(again["csv"])) == 4 and again["best"] == best


def test_sequential_sweep(data_dir, tmp_path, capsys):
    out_dir = tmp_path / "seq"
    out = main(["--config", BINARY, "--protocol", "sequential", "--tau_f", "0.1", "1.0", "--tau_b", "0.3", "1.0",
                "--fixed_tau_b", "1.0", "--output_dir", str(out_dir)] + _overrides(data_dir, str(tmp_path)))
    progress = capsys.readouterr().err
    assert "[sweep] tau_f trial 1/2" in progress and "phase 1 done" in progress and "[sweep] best:" in progress
    rows = _read(out["csv"])
    phase1 = [r for r in rows if r["phase"] == "tau_f"]
    phase2 = [r for r in rows if r["phase"] == "tau_b"]
    assert {float(r["tau_f"]) for r in phase1} == {0.1, 1.0} and {float(r["tau_b"]) for r in phase1} == {1.0}
    best_tf = min(phase1, key=lambda r: float(r["value"]))["tau_f"]
    # phase 2 sweeps tau_b at the best tau_f (tau_b = 1.0 was already run in phase 1)
    assert len(phase2) == 1 and phase2[0]["tau_f"] == best_tf and float(phase2[0]["tau_b"]) == 0.3
    assert (out["best"]["tau_f"], out["best"]["tau_b"]) == _best_by_mean(rows)
    assert os.path.isfile(out["heatmap"])


def test_seeds_are_averaged_when_choosing():
    rows = [
        {"state": "COMPLETE", "tau_f": 0.1, "tau_b": 1.0, "lr": "", "value": 0.1},  # lucky seed
        {"state": "COMPLETE", "tau_f": 0.1, "tau_b": 1.0, "lr": "", "value": 0.9},
        {"state": "COMPLETE", "tau_f": 0.5, "tau_b": 1.0, "lr": "", "value": 0.4},
        {"state": "COMPLETE", "tau_f": 0.5, "tau_b": 1.0, "lr": "", "value": 0.4},
        {"state": "FAIL", "tau_f": 1.0, "tau_b": 1.0, "lr": "", "value": ""},
    ]
    best = choose(rows)
    assert (best["tau_f"], best["tau_b"], best["num_trials"]) == (0.5, 1.0, 2)
    assert best["value"] == pytest.approx(0.4)


def test_heatmap_marks_diagonal_and_best(tmp_path):
    from PIL import Image

    rows = [{"state": "COMPLETE", "tau_f": tf, "tau_b": tb, "lr": "", "value": v}
            for (tf, tb), v in {(0.5, 0.5): 1.0, (0.5, 2.0): 0.2, (2.0, 0.5): 0.7, (2.0, 2.0): 0.9}.items()]
    path = tmp_path / "h.png"
    write_heatmap(rows, str(path))
    img = Image.open(path).convert("RGB")
    # cell (row 0, col 0) is tau_f = tau_b = 0.5: red frame (left 70, top 50, cells 72 x 40)
    assert img.getpixel((70 + 2, 50 + 20)) == (220, 0, 0)
    # cell (0.5, 2.0) is off the diagonal: no red frame; it is the best, so it is the brightest cell
    assert img.getpixel((70 + 72 + 2, 50 + 20)) != (220, 0, 0)
    assert sum(img.getpixel((70 + 72 + 36, 50 + 30))) > sum(img.getpixel((70 + 72 + 36, 50 + 40 + 30)))


def test_bad_sweep_arguments_are_reported(tmp_path, capsys):
    with pytest.raises(ValueError, match="tau_b"):
        SweepConfig(configs=[BINARY], tau_b=[0.0, 1.0])
    with pytest.raises(SystemExit) as e:
        main(["--config", BINARY, "--trainr.max_epochs=1"])
    assert e.value.code == 2 and "--trainer." in capsys.readouterr().err


def test_sweep_stops_before_any_trial_on_missing_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main_entry(["sweep", "--config", BINARY, "--tau_f", "0.1", "--tau_b", "1.0",
                        "--output_dir", str(tmp_path / "s")] + _overrides(str(tmp_path / "nothing"), str(tmp_path)))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "FashionMNIST not found" in err
    assert not os.path.exists(tmp_path / "s" / "trials")

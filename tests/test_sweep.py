"""``lightning-discrete sweep``: grid and sequential protocols on tiny generated data (no network),
the results, the heatmap figure and the command line."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import statistics

import pytest

pytest.importorskip("optuna")
pytest.importorskip("torchvision")
pytest.importorskip("matplotlib")

from lightning_discrete.cli import main as entry_point  # noqa: E402
from lightning_discrete.sweep import LOST_WORKER, SweepConfig, aggregate, choose, main, write_csv  # noqa: E402
from lightning_discrete.sweep.plots import heatmap_figure, write_heatmap  # noqa: E402
from lightning_discrete.sweep.plots import BEST_LABEL, DIAGONAL_LABEL  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "recipes", "binary_fashion_mnist.yaml")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, make_mnist_layout):
    root = tmp_path_factory.mktemp("sweepdata")
    make_mnist_layout(str(root), "FashionMNIST", n_train=40, n_test=16)
    return str(root)


@pytest.fixture
def overrides(fast_args, data_dir, tmp_path):
    # default_root_dir is set per trial by the sweep; the rest makes each trial 2 steps
    return [a for a in fast_args(data_dir, str(tmp_path)) if not a.startswith("--trainer.default_root_dir")] + [
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


def _row(tf, tb, value, state="COMPLETE", lr=""):
    return {"state": state, "tau_f": tf, "tau_b": tb, "lr": lr, "value": value}


# ------------------------------------------------------------------------------------- #
# whole sweeps
# ------------------------------------------------------------------------------------- #
def test_grid_sweep_2x2(overrides, tmp_path, caplog):
    out_dir = tmp_path / "grid"
    args = ["--config", BINARY, "--protocol", "grid", "--tau_f", "0.1", "1.0", "--tau_b", "0.5", "1.0",
            "--output_dir", str(out_dir)] + overrides
    with caplog.at_level(logging.INFO, logger="lightning_discrete.sweep"):
        out = main(args)
    rows = _read(out["csv"])
    assert len(rows) == 4 and all(r["state"] == "COMPLETE" for r in rows)
    assert {(float(r["tau_f"]), float(r["tau_b"])) for r in rows} == {(0.1, 0.5), (0.1, 1.0), (1.0, 0.5), (1.0, 1.0)}
    best = out["best"]
    assert (best["tau_f"], best["tau_b"]) == _best_by_mean(rows)
    assert best["value"] == pytest.approx(min(float(r["value"]) for r in rows))
    assert out["heatmap"] == str(out_dir / "heatmap.png") and os.path.getsize(out["heatmap"]) > 0
    assert json.load(open(out_dir / "best.json"))["best"] == best
    assert str(out_dir / "sweep.db") in out["storage"]
    # progress goes through logging: every trial reports when it finishes, with its score
    done = [r.getMessage() for r in caplog.records if r.name == "lightning_discrete.sweep.runner" and " done " in r.getMessage()]
    assert len(done) == 4
    for r in rows:
        assert any(f"best {float(r['value']):.5g}" in m for m in done)
    # every trial ran the recipe with its temperatures and kept its config
    for r in rows:
        saved = open(os.path.join(r["dir"], "config.yaml")).read()
        assert f"tau_f: {float(r['tau_f'])}" in saved and f"tau_b: {float(r['tau_b'])}" in saved
    # re-running the same command resumes the finished study: no new trials
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lightning_discrete.sweep"):
        again = main(args)
    assert len(_read(again["csv"])) == 4 and again["best"] == best
    assert not [r for r in caplog.records if " done " in r.getMessage()]


def test_sequential_sweep_from_the_command_line(overrides, tmp_path, capsys):
    out_dir = tmp_path / "seq"
    entry_point(["sweep", "--config", BINARY, "--protocol", "sequential", "--tau_f", "0.1", "1.0",
                 "--tau_b", "0.3", "1.0", "--fixed_tau_b", "1.0", "--output_dir", str(out_dir)] + overrides)
    progress = capsys.readouterr().err
    assert "[sweep] tau_f trial #0 (0/2 cells done)" in progress and "phase 1 done" in progress and "[sweep] best:" in progress
    rows = _read(out_dir / "trials.csv")
    phase1 = [r for r in rows if r["phase"] == "tau_f"]
    phase2 = [r for r in rows if r["phase"] == "tau_b"]
    assert {float(r["tau_f"]) for r in phase1} == {0.1, 1.0} and {float(r["tau_b"]) for r in phase1} == {1.0}
    best_tf = min(phase1, key=lambda r: float(r["value"]))["tau_f"]
    # phase 2 sweeps tau_b at the best tau_f (tau_b = 1.0 was already run in phase 1)
    assert len(phase2) == 1 and phase2[0]["tau_f"] == best_tf and float(phase2[0]["tau_b"]) == 0.3
    best = json.load(open(out_dir / "best.json"))["best"]
    assert (best["tau_f"], best["tau_b"]) == _best_by_mean(rows)
    assert os.path.isfile(out_dir / "heatmap.png")


def test_a_cell_queued_again_after_it_completed_is_not_run_twice(overrides, tmp_path, caplog):
    import optuna

    out_dir = tmp_path / "twice"
    args = ["--config", BINARY, "--tau_f", "0.1", "--tau_b", "0.5", "1.0", "--output_dir", str(out_dir)] + overrides
    main(args)
    # e.g. two workers that both queued the cell: the copy is claimed, found complete, not run
    storage = f"sqlite:///{out_dir / 'sweep.db'}"
    optuna.load_study(study_name="binary_fashion_mnist-grid/grid", storage=storage).enqueue_trial(
        {"tau_b": 0.5, "tau_f": 0.1})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lightning_discrete.sweep"):
        out = main(args)
    assert not [r for r in caplog.records if " done " in r.getMessage()]
    rows = _read(out["csv"])
    assert sorted((float(r["tau_f"]), float(r["tau_b"])) for r in rows if r["state"] == "COMPLETE") == [
        (0.1, 0.5), (0.1, 1.0)]
    (dup,) = [r for r in rows if r["state"] == "PRUNED"]
    (first,) = [r for r in rows if r["state"] == "COMPLETE" and float(r["tau_b"]) == 0.5]
    assert dup["error"] == f"duplicate of trial {first['number']}, not run"


def test_a_postgres_url_without_its_driver_names_the_extra(monkeypatch, tmp_path):
    import sys

    from lightning_discrete.sweep import SweepError, open_storage

    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now fails
    cfg = SweepConfig(configs=[BINARY], storage="postgresql://me:secret@127.0.0.1:1/sweeps", output_dir=str(tmp_path))
    with pytest.raises(SweepError, match=r"lightning_discrete\[sweep-postgres\]") as err:
        open_storage(cfg)
    assert "secret" not in str(err.value) and "me:***@127.0.0.1" in str(err.value)


def test_sweep_stops_before_any_trial_on_missing_data(fast_args, tmp_path, capsys):
    args = [a for a in fast_args(str(tmp_path / "nothing"), str(tmp_path)) if "default_root_dir" not in a]
    with pytest.raises(SystemExit) as e:
        entry_point(["sweep", "--config", BINARY, "--tau_f", "0.1", "--tau_b", "1.0",
                     "--output_dir", str(tmp_path / "s")] + args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "FashionMNIST not found" in err
    assert not os.path.exists(tmp_path / "s" / "trials")


# ------------------------------------------------------------------------------------- #
# results
# ------------------------------------------------------------------------------------- #
def test_seeds_are_averaged_when_choosing():
    rows = [
        _row(0.1, 1.0, 0.1),  # lucky seed
        _row(0.1, 1.0, 0.9),
        _row(0.5, 1.0, 0.4),
        _row(0.5, 1.0, 0.4),
        _row(1.0, 1.0, "", state="FAIL"),
    ]
    best = choose(rows)
    assert (best["tau_f"], best["tau_b"], best["num_trials"]) == (0.5, 1.0, 2)
    assert best["value"] == pytest.approx(0.4)
    assert set(aggregate(rows)) == {(0.1, 1.0, None), (0.5, 1.0, None)}


def test_learning_rates_are_kept_apart_and_csv_round_trips(tmp_path):
    rows = [_row(0.1, 1.0, 0.3, lr=1e-3), _row(0.1, 1.0, 0.7, lr=1e-2), _row(0.5, 1.0, 0.5, lr=1e-3)]
    agg = aggregate(rows)
    assert agg[(0.1, 1.0, 1e-3)] == (pytest.approx(0.3), 1) and agg[(0.1, 1.0, 1e-2)] == (pytest.approx(0.7), 1)
    assert choose(rows)["lr"] == 1e-3
    back = _read(write_csv(rows, str(tmp_path / "t.csv")))
    assert choose(back) == choose(rows)


# ------------------------------------------------------------------------------------- #
# the heatmap
# ------------------------------------------------------------------------------------- #
def _cell_labels(ax):
    """Map image cell (x, y) -> (tau_f, tau_b) through the tick labels."""
    xs = [float(t.get_text()) for t in ax.get_xticklabels()]
    ys = [float(t.get_text()) for t in ax.get_yticklabels()]
    return lambda x, y: (ys[int(round(y))], xs[int(round(x))])


def test_heatmap_figure_axes_cells_colorbar_diagonal_and_best():
    values = {(0.5, 0.5): 1.0, (0.5, 2.0): 0.2, (2.0, 0.5): 0.7, (2.0, 2.0): 0.9, (1.0, 0.5): 0.8}
    rows = [_row(tf, tb, v) for (tf, tb), v in values.items()]
    fig = heatmap_figure(rows, metric="val/loss")
    ax, cax = fig.axes
    # the axes are labelled with the temperatures, rows tau_f and columns tau_b
    assert "tau_f" in ax.get_ylabel() and "tau_b" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.5", "1", "2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "2"]
    # one image cell per (tau_f, tau_b); the colour bar names the metric
    (image,) = ax.images
    grid = image.get_array()
    assert grid.shape == (3, 2) and int(grid.mask.sum()) == 1  # (1.0, 2.0) was not run
    assert cax.get_ylabel() == "val/loss"
    cell = _cell_labels(ax)
    for y in range(3):
        for x in range(2):
            if not grid.mask[y, x]:
                assert grid[y, x] == pytest.approx(values[cell(x, y)])
    # every cell that ran is annotated with its value
    texts = sorted(float(t.get_text()) for t in ax.texts)
    assert texts == pytest.approx(sorted(values.values()))
    # the diagonal tau_f = tau_b is marked: a frame around exactly those cells, and the best cell
    def framed(label):
        return [cell(p.get_x() + p.get_width() / 2, p.get_y() + p.get_height() / 2)
                for p in ax.patches if p.get_label() == label]

    assert sorted(framed(DIAGONAL_LABEL)) == [(0.5, 0.5), (2.0, 2.0)]
    assert framed(BEST_LABEL) == [(0.5, 2.0)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [DIAGONAL_LABEL, BEST_LABEL]


def test_heatmap_takes_the_best_learning_rate_of_each_cell_and_saves_a_png(tmp_path):
    rows = [_row(0.1, 0.1, 0.9, lr=1e-3), _row(0.1, 0.1, 0.4, lr=1e-2), _row(0.1, 0.3, 0.6, lr=1e-3)]
    fig = heatmap_figure(rows, metric="val/acc_loss", title="t")
    ax = fig.axes[0]
    assert ax.get_title() == "t" and fig.axes[1].get_ylabel() == "val/acc_loss"
    assert sorted(float(t.get_text()) for t in ax.texts) == pytest.approx([0.4, 0.6])
    path = write_heatmap(rows, str(tmp_path / "h.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_heatmap_without_matplotlib_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(ImportError, match=r"pip install lightning_discrete\[plots\]"):
        heatmap_figure([_row(0.1, 0.1, 0.5)])


# ------------------------------------------------------------------------------------- #
# the command line
# ------------------------------------------------------------------------------------- #
def test_bad_sweep_arguments_are_reported(capsys):
    with pytest.raises(ValueError, match="tau_b"):
        SweepConfig(configs=[BINARY], tau_b=[0.0, 1.0])
    with pytest.raises(ValueError, match="lr"):
        SweepConfig(configs=[BINARY], lr=[-1e-3])
    with pytest.raises(SystemExit) as e:
        main(["--config", BINARY, "--trainr.max_epochs=1"])
    assert e.value.code == 2 and "--trainer." in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--config", BINARY, "--tau_f", "0.1", "-0.5"])
    assert e.value.code == 2 and "tau_f" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--config", BINARY, "--protocol", "random"])
    assert e.value.code == 2 and "protocol" in capsys.readouterr().err


@pytest.mark.parametrize("subcommand", ["sweep", "import-idx", "import-mnist-pickle"])
def test_every_extra_subcommand_has_help(subcommand, capsys):
    with pytest.raises(SystemExit) as e:
        entry_point([subcommand, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lightning-discrete {subcommand}")


def test_sweep_help_shows_the_config_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    defaults = SweepConfig(configs=["x.yaml"])
    for option in ("--tau_f", "--tau_b", "--tau", "--fixed_tau_b", "--lr", "--seeds", "--metric", "--storage",
                   "--wait_timeout", "--heartbeat_interval", "--grace_period", "--max_retry", "--quiet", "--config"):
        assert option in out
    assert f"default: {defaults.metric}" in out and f"default: {defaults.fixed_tau_b}" in out


def test_list_options_take_space_separated_or_json_values(tmp_path, monkeypatch):
    seen, verbose = [], []

    def fake_run_sweep(cfg):
        seen.append(cfg)
        verbose.append(logging.getLogger("lightning_discrete.sweep.runner").isEnabledFor(logging.INFO))
        return {}

    monkeypatch.setattr("lightning_discrete.sweep.cli.run_sweep", fake_run_sweep)
    main(["--config", "a.yaml", "--config", "b.yaml", "--tau_f", "1", "0.1", "--tau_b=[0.5,2]", "--lr", "3e-4",
          "--seeds", "0", "1", "--protocol", "sequential", "--trainer.max_epochs", "3", "--model.tau_f=0.2",
          "--output_dir", str(tmp_path)])
    (cfg,) = seen
    assert cfg.configs == ["a.yaml", "b.yaml"] and cfg.protocol == "sequential"
    assert cfg.tau_f == [0.1, 1.0] and cfg.tau_b == [0.5, 2.0] and list(cfg.lr) == [3e-4]
    assert list(cfg.seeds) == [0, 1] and cfg.overrides == ["--trainer.max_epochs", "3", "--model.tau_f=0.2"]
    assert math.isclose(cfg.fixed_tau_b, SweepConfig(configs=["x"]).fixed_tau_b)
    # --quiet silences the progress lines (warnings still show)
    main(["--config", "a.yaml", "--quiet", "--output_dir", str(tmp_path)])
    assert verbose == [True, False]


def test_check_config_warns_when_a_schedule_overrides_the_swept_temperature(tmp_path, caplog):
    from lightning_discrete.sweep.runner import check_config

    quickstart = os.path.join(ROOT, "recipes", "quickstart.yaml")  # anneals tau_f with a TemperatureScheduler
    overrides = ["--data.dataset=digits", "--trainer.logger=false"]
    with caplog.at_level(logging.WARNING, logger="lightning_discrete.sweep"):
        check_config(SweepConfig(configs=[quickstart], overrides=overrides, study_name="q", output_dir=str(tmp_path / "a")))
    warned = [r.getMessage() for r in caplog.records if "TemperatureScheduler" in r.getMessage()]
    assert len(warned) == 1 and "sets tau_f during training" in warned[0]
    caplog.clear()
    # the same config without its scheduler: no warning
    no_schedule = overrides + ["--trainer.callbacks=[]"]
    with caplog.at_level(logging.WARNING, logger="lightning_discrete.sweep"):
        check_config(SweepConfig(configs=[quickstart], overrides=no_schedule, study_name="q", output_dir=str(tmp_path / "b")))
    assert not [r for r in caplog.records if "TemperatureScheduler" in r.getMessage()]


# ------------------------------------------------------------------------------------- #
# distributed sweeps: several `lightning-discrete sweep` workers on one PostgreSQL study
# ------------------------------------------------------------------------------------- #
GRID = {"tau_f": [0.1, 0.5, 1.0], "tau_b": [0.5, 1.0, 2.0]}
CELLS = {(tf, tb) for tf in GRID["tau_f"] for tb in GRID["tau_b"]}


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    """A throw-away PostgreSQL server on loopback (initdb into a temp folder, pg_ctl on a free
    port; as root, both run as the `postgres` user); its URL; stopped and deleted afterwards."""
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile

    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not on PATH")
    pytest.importorskip("psycopg", reason="the sweep-postgres extra (psycopg 3) is not installed")
    prefix = []
    user = None
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as `postgres`
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the PostgreSQL server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root and `runuser` (util-linux) is missing to run the server as `postgres`")
        prefix = ["runuser", "-u", "postgres", "--"]
    base = tempfile.mkdtemp(prefix="ld-postgres-")
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
    data, logfile = os.path.join(base, "data"), os.path.join(base, "server.log")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*args):
        subprocess.run(prefix + list(args), check=True, capture_output=True, timeout=120)

    run(initdb, "-D", data, "-U", "sweep", "--auth=trust", "--no-sync", "-E", "UTF8")
    run(pg_ctl, "-D", data, "-l", logfile, "-w", "-t", "60", "start",
        "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        yield f"postgresql://sweep@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _start_workers(n, args, folder):
    """``n`` `lightning-discrete sweep` processes, each with its own output folder and log."""
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    workers = []
    for i in range(n):
        out = folder / f"worker{i}"
        out.mkdir()
        log = open(out / "worker.log", "w")
        cmd = [sys.executable, "-m", "lightning_discrete", "sweep", *args, "--output_dir", str(out)]
        workers.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), out))
    return workers


def _wait(workers, timeout=300):
    codes = [p.wait(timeout=timeout) for p, _ in workers]
    logs = "\n".join(f"--- {out.name} (exit {c}):\n{open(out / 'worker.log').read()[-3000:]}"
                     for (_, out), c in zip(workers, codes))
    return codes, logs


def _grid_trials(url, study_name):
    """The trials of the sweep's grid study (none before a worker created it)."""
    import optuna

    try:
        return optuna.load_study(study_name=f"{study_name}/grid", storage=url).get_trials()
    except KeyError:
        return []


def _pid(worker):
    return int(worker.rsplit(":", 1)[1])


def _same_outputs(folders):
    """The outputs of every folder are the same (best.json but for its own paths); the rows of trials.csv."""
    first, *rest = folders

    def best(folder):
        return {k: v for k, v in json.load(open(folder / "best.json")).items() if k not in ("csv", "heatmap")}

    for other in rest:
        for name in ("trials.csv", "heatmap.png"):
            assert (other / name).read_bytes() == (first / name).read_bytes(), name
        assert best(other) == best(first)
    return _read(first / "trials.csv")


def _sweep_args(url, study_name, overrides):
    return ["--config", BINARY, "--protocol", "grid", "--tau_f", *map(str, GRID["tau_f"]), "--tau_b",
            *map(str, GRID["tau_b"]), "--storage", url, "--study_name", study_name, "--heartbeat_interval", "1",
            "--grace_period", "5", *overrides]


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_three_workers_share_a_grid_on_postgres(postgres_url, overrides, tmp_path):
    import numpy as np

    workers = _start_workers(3, _sweep_args(postgres_url, "shared", overrides), tmp_path)
    codes, logs = _wait(workers)
    assert codes == [0, 0, 0], logs
    trials = _grid_trials(postgres_url, "shared")
    # every cell ran exactly once: no duplicate trial in any state
    assert len(trials) == 9 and all(t.state.name == "COMPLETE" for t in trials), logs
    assert {(t.params["tau_f"], t.params["tau_b"]) for t in trials} == CELLS
    # the cells were shared: trials came from more than one worker, and only from these workers. (Not
    # necessarily all three: a worker that starts late may find every cell already claimed.)
    takers = {_pid(t.user_attrs["worker"]) for t in trials}
    assert len(takers) >= 2 and takers <= {p.pid for p, _ in workers}, logs
    # what each worker wrote covers the whole grid, and they all agree
    rows = _same_outputs([out for _, out in workers])
    assert {(float(r["tau_f"]), float(r["tau_b"])) for r in rows} == CELLS
    assert sorted(float(r["value"]) for r in rows) == pytest.approx(sorted(t.value for t in trials))
    best = json.load(open(workers[0][1] / "best.json"))["best"]
    assert (best["tau_f"], best["tau_b"]) == _best_by_mean(rows)
    assert np.ma.count_masked(heatmap_figure(rows).axes[0].images[0].get_array()) == 0


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_a_killed_worker_s_cell_is_run_again(postgres_url, overrides, tmp_path, caplog):
    import signal
    import time

    args = _sweep_args(postgres_url, "killed", overrides)
    workers = _start_workers(3, args, tmp_path)
    pids = {p.pid: p for p, _ in workers}
    # SIGKILL a worker in the middle of a trial: its run has started (config saved), not finished
    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline:
        time.sleep(0.2)
        for t in _grid_trials(postgres_url, "killed"):
            pid = _pid(t.user_attrs["worker"]) if "worker" in t.user_attrs else None
            if t.state.name == "RUNNING" and pid in pids and os.path.isfile(os.path.join(t.user_attrs["dir"], "config.yaml")):
                os.kill(pid, signal.SIGKILL)
                victim = (pid, t.number, (t.params["tau_f"], t.params["tau_b"]))
                break
    assert victim is not None, "no worker was seen running a trial"
    codes, logs = _wait(workers)
    survivors = [out for p, out in workers if p.pid != victim[0]]
    assert sorted(codes) == [-signal.SIGKILL, 0, 0], logs
    trials = _grid_trials(postgres_url, "killed")
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    # the grid completed, every cell once, each result from a run that finished
    assert sorted((t.params["tau_f"], t.params["tau_b"]) for t in complete) == sorted(CELLS), logs
    # the killed cell's result came from a survivor (the victim may have finished other cells before)
    (redone,) = [t for t in complete if (t.params["tau_f"], t.params["tau_b"]) == victim[2]]
    assert _pid(redone.user_attrs["worker"]) != victim[0]
    killed = [t for t in trials if t.number == victim[1]]
    assert [t.state.name for t in killed] == ["FAIL"] and len(trials) == 10
    rows = _same_outputs(survivors)
    (retry,) = [r for r in rows if r["retry_of"] == str(victim[1])]
    assert retry["state"] == "COMPLETE" and (float(retry["tau_f"]), float(retry["tau_b"])) == victim[2]
    assert [r["error"] for r in rows if r["state"] == "FAIL"] == [LOST_WORKER]
    # re-running the finished sweep runs nothing and rewrites the same outputs
    before = {name: (survivors[0] / name).read_bytes() for name in ("trials.csv", "best.json")}
    for name in before:
        (survivors[0] / name).unlink()
    with caplog.at_level(logging.INFO, logger="lightning_discrete.sweep"):
        main(args + ["--output_dir", str(survivors[0])])
    assert not [r for r in caplog.records if " done " in r.getMessage()]
    assert len(_grid_trials(postgres_url, "killed")) == 10
    assert {name: (survivors[0] / name).read_bytes() for name in before} == before


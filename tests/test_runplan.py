"""benchmarks/runplan.py: the resumable executor of the reproduction and benchmark plans.

Each test runs real (tiny) trainings of the quick-start recipe on the bundled digits data.
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNPLAN = os.path.join(ROOT, "benchmarks", "runplan.py")
FAST = ["--data.dataset=digits", "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=2", "--trainer.enable_model_summary=false"]


def _plan(tmp_path, groups):
    plan = {"results": str(tmp_path / "results"), "scratch": str(tmp_path / "scratch"), "data_dir": str(tmp_path / "data"),
            "groups": groups}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def _runplan(*args):
    proc = subprocess.run([sys.executable, RUNPLAN, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


GRID = {"configs": ["recipes/quickstart.yaml"], "args": FAST,
        "grid": {"model.init_args.tau_b": [0.5, 2.0]}, "seeds": [0], "minutes": 1}


FINAL = {"configs": ["recipes/quickstart.yaml"], "args": FAST, "test": True, "seeds": [3], "minutes": 1,
         "select": [{"from": "grid", "metric": "val/loss", "mode": "min", "top": 1, "keys": ["model.init_args.tau_b"]}]}


@pytest.mark.timeout(900)
def test_runs_are_stored_once_resumed_and_selected_from(tmp_path):
    # one test, so that the five short trainings it needs are started once
    twin = dict(GRID, grid={"model.init_args.tau_b": [0.5]})  # one of grid's runs, under another name
    plan = _plan(tmp_path, {"grid": GRID, "final": FINAL, "twin": twin})
    assert "waits for 2 run(s) of grid" in _runplan("status", plan)
    out = _runplan("run", plan, "--workers", "2", "--groups", "grid")
    results = tmp_path / "results"
    files = sorted(p.name for p in results.glob("*.json"))
    assert files == ["grid__tau_b=0.5__seed=0.json", "grid__tau_b=2__seed=0.json"], out
    rec = json.loads((results / files[0]).read_text())
    # the record: cell, seed, the command that reproduces it, versions, and the logged metrics
    assert rec["cell"] == {"model.init_args.tau_b": 0.5} and rec["seed"] == 0
    assert "--model.init_args.tau_b=0.5" in rec["command"] and "--seed_everything=0" in rec["command"]
    assert set(rec["versions"]) >= {"torch", "lightning", "lightning_discrete"}
    import torch

    assert rec["host"]["accelerator"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    assert rec["metrics"]["val/loss"] and all(len(row) == 3 for row in rec["metrics"]["val/loss"])
    mtimes = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    # a second run starts nothing
    assert "start " not in _runplan("run", plan, "--groups", "grid")
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")} == mtimes
    # a run whose record is gone is run again, and only that one: rebuilt from its finished
    # scratch folder (its latest.ckpt is the final epoch), not trained a second time
    gone = json.loads((results / files[1]).read_text())
    (results / files[1]).unlink()
    again = _runplan("run", plan, "--workers", "1", "--groups", "grid")
    assert [line for line in again.splitlines() if line.startswith("start ")] == [f"start {files[1][:-5]}"]
    rebuilt = json.loads((results / files[1]).read_text())
    assert "(resumed)" in again and rebuilt["metrics"]["val/loss"] == gone["metrics"]["val/loss"]
    assert (results / files[1]).exists() and (results / files[0]).stat().st_mtime_ns == mtimes[files[0]]
    # a group whose run is one of grid's: copied, not trained again, and counted once
    out = _runplan("run", plan, "--groups", "twin")
    assert "start " not in out and "same as grid__tau_b=0.5__seed=0" in out
    copy = json.loads((results / "twin__tau_b=0.5__seed=0.json").read_text())
    assert copy["same_as"] == "grid__tau_b=0.5__seed=0" and copy["group"] == "twin"
    assert copy["metrics"] == rec["metrics"] and copy["cell"] == rec["cell"]
    # the select group now expands to the grid's best cell
    recs = [json.loads((results / f).read_text()) for f in files]
    best = min(recs, key=lambda r: min(v for _, _, v in r["metrics"]["val/loss"]))
    _runplan("run", plan, "--workers", "1", "--groups", "final")
    finals = [json.loads(p.read_text()) for p in results.glob("final__*.json")]
    assert len(finals) == 1 and finals[0]["cell"] == best["cell"] and finals[0]["seed"] == 3
    # test: true -> the best checkpoint was tested and its test metrics joined the record
    assert "test/loss" in finals[0]["metrics"] and "--ckpt_path=" in finals[0]["test_command"]
    # retest: a record that lacks a test metric gets it back from the same checkpoint, and keeps the rest
    path = results / f"{finals[0]['id']}.json"
    lacking = dict(finals[0], metrics={k: v for k, v in finals[0]["metrics"].items() if k != "test/loss"})
    path.write_text(json.dumps(lacking))
    out = _runplan("retest", plan, "--groups", "final", "--metric", "test/loss", "--test-arg=--trainer.limit_test_batches=2")
    back = json.loads(path.read_text())
    assert "added test/loss" in out and back["retested"][0]["added"] == ["test/loss"]
    assert "--trainer.limit_test_batches=2" in back["retested"][0]["command"]
    assert {k: v for k, v in back["metrics"].items() if k != "test/loss"} == lacking["metrics"]
    assert len(back["metrics"]["test/loss"]) == 1 and back["metrics"]["test/loss"][0][2] > 0
    assert "no stored, tested run" in _runplan("retest", plan, "--groups", "final", "--metric", "test/loss")


def test_a_second_runner_on_the_same_plan_is_refused(tmp_path):
    import fcntl

    plan = _plan(tmp_path, {"grid": GRID})
    (tmp_path / "results").mkdir()
    with open(tmp_path / "results" / ".runplan.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = subprocess.run([sys.executable, RUNPLAN, "run", str(plan)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode != 0 and "another runner" in proc.stderr
    assert not list((tmp_path / "results").glob("*.json"))


def test_by_seed_runs_every_group_s_first_seed_first(tmp_path):
    groups = {name: {"configs": ["recipes/quickstart.yaml"], "grid": {"model.init_args.tau_b": [0.5, 2.0]},
                     "seeds": [7, 3]} for name in ("a", "b")}
    plan = _plan(tmp_path, groups)

    def order(*flags):
        lines = _runplan("run", plan, "--dry-run", *flags).splitlines()
        return [(line.split("--trainer.default_root_dir=")[1].split()[0].rsplit("/", 1)[1]) for line in lines]

    # plan order: group by group, cell by cell, every seed of a cell
    assert order() == ["a__tau_b=0.5__seed=7", "a__tau_b=0.5__seed=3", "a__tau_b=2__seed=7", "a__tau_b=2__seed=3",
                       "b__tau_b=0.5__seed=7", "b__tau_b=0.5__seed=3", "b__tau_b=2__seed=7", "b__tau_b=2__seed=3"]
    # --by-seed: the first listed seed (7) of every group and cell before the second (3)
    assert order("--by-seed") == ["a__tau_b=0.5__seed=7", "a__tau_b=2__seed=7", "b__tau_b=0.5__seed=7",
                                  "b__tau_b=2__seed=7", "a__tau_b=0.5__seed=3", "a__tau_b=2__seed=3",
                                  "b__tau_b=0.5__seed=3", "b__tau_b=2__seed=3"]


def test_compute_hours_counts_cpu_and_gpu_runs_apart():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from runplan import compute_hours, on_gpu

    old = {"wall_s": 3600.0, "threads": 2, "host": {"machine": "x86_64", "cpus": 2}}  # before the field
    cpu = {"wall_s": 1800.0, "threads": 1, "host": {"machine": "x86_64", "cpus": 2, "accelerator": "cpu"}}
    gpu = {"wall_s": 900.0, "threads": 1, "host": {"machine": "x86_64", "cpus": 16, "accelerator": "NVIDIA H200"}}
    assert [on_gpu(r) for r in (old, cpu, gpu)] == [False, False, True]
    # CPU hours: wall x threads; GPU: wall time only
    assert compute_hours([old, cpu, gpu]) == (2.5, 0.25)
    assert compute_hours([]) == (0.0, 0.0)


def test_a_twin_is_the_same_command_seed_and_testing_only():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from runplan import SCALED_ESTIMATE_MARGIN, command, compute_hours, estimate_s, twin

    base = {"configs": ["recipes/quickstart.yaml"], "args": ["--trainer.max_epochs=2"], "seeds": [0]}
    plan = {"results": "r", "scratch": "s", "data_dir": "data", "groups": {
        "a": dict(base, grid={"model.init_args.tau_b": [0.5, 1.0]}),
        "b": dict(base, grid={"model.init_args.tau_b": [0.5]}),
        "c": dict(base, args=["--trainer.max_epochs=3"], grid={"model.init_args.tau_b": [0.5]}),
        "d": dict(base, grid={"model.init_args.tau_b": [0.5]}, test=True)}}
    cell = {"model.init_args.tau_b": 0.5}

    def rec(group, seed, wall=60.0, accel="cpu"):
        rid = f"{group}__tau_b=0.5__seed={seed}"
        return {"id": rid, "group": group, "cell": cell, "seed": seed, "wall_s": wall, "threads": 1,
                "host": {"accelerator": accel}, "command": " ".join(command(plan, group, cell, seed, rid)[1:])}

    results = {r["id"]: r for r in [rec("a", 0), rec("a", 1)]}
    # same configs, args, cell and seed, other output folder: a's seed-0 run
    assert twin(plan, "b", cell, 0, "b__tau_b=0.5__seed=0", results)["id"] == "a__tau_b=0.5__seed=0"
    assert twin(plan, "b", cell, 2, "b__tau_b=0.5__seed=2", results) is None      # another seed
    assert twin(plan, "c", cell, 0, "c__tau_b=0.5__seed=0", results) is None      # other arguments
    assert twin(plan, "d", cell, 0, "d__tau_b=0.5__seed=0", results) is None      # tested, a's run was not
    assert twin(plan, "b", {"model.init_args.tau_b": 1.0}, 0, "b__tau_b=1__seed=0", results) is None
    # a copy counts no compute of its own
    copy = dict(rec("a", 0), id="b__tau_b=0.5__seed=0", group="b", same_as="a__tau_b=0.5__seed=0")
    assert compute_hours([rec("a", 0), copy]) == (60.0 / 3600, 0.0)
    # the budget estimate: the slowest stored run of the group on the same kind of device
    results = {r["id"]: r for r in [rec("a", 0, 100.0), rec("a", 1, 40.0, "NVIDIA H200")]}
    assert estimate_s(plan, "a", results, gpu=False) == 100.0
    assert estimate_s(plan, "a", results, gpu=True) == 40.0
    results.pop("a__tau_b=0.5__seed=1")
    assert estimate_s(plan, "a", results, gpu=True) == 0.0  # no GPU run and no `minutes`: the plan's figure
    # a final without stored runs: its tuning group's slowest run on the device, scaled by the epochs (x margin)
    plan["groups"]["f"] = dict(base, args=["--trainer.max_epochs=8"], minutes=99, select=[
        {"from": "a", "metric": "val/loss", "mode": "min", "top": 1, "keys": ["model.init_args.tau_b"]}])
    results = {r["id"]: r for r in [rec("a", 0, 100.0), rec("a", 1, 30.0), rec("a", 2, 10.0, "NVIDIA H200")]}
    assert estimate_s(plan, "f", results) == pytest.approx(100.0 * 8 / 2 * SCALED_ESTIMATE_MARGIN)
    assert estimate_s(plan, "f", results, gpu=True) == pytest.approx(10.0 * 8 / 2 * SCALED_ESTIMATE_MARGIN)
    results = {"f__tau_b=0.5__seed=0": dict(rec("a", 0, 500.0), group="f")}
    assert estimate_s(plan, "f", results) == 500.0          # its own stored run first
    assert estimate_s(plan, "f", {}) == 99 * 60.0           # nothing measured: the plan's `minutes`


def test_left_to_train_counts_shared_and_twinned_runs_once_at_the_group_s_mean_cpu_time():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from runplan import command, left_to_train

    base = {"configs": ["recipes/quickstart.yaml"], "args": ["--trainer.max_epochs=2"]}
    plan = {"results": "r", "scratch": "s", "data_dir": "data", "groups": {
        "a": dict(base, grid={"model.init_args.tau_b": [0.5, 1.0]}, seeds=[0, 1]),
        "b": dict(base, grid={"model.init_args.tau_b": [0.5]}, seeds=[0, 1, 2]),  # a's tau_b 0.5 runs, seed 2 too
        "c": dict(base, grid={"model.init_args.tau_b": [2.0]}, seeds=[0], minutes=10)}}

    def rec(group, tau, seed, wall, threads=1, accel="cpu", **extra):
        cell = {"model.init_args.tau_b": tau}
        rid = f"{group}__tau_b={tau:g}__seed={seed}"
        return {"id": rid, "group": group, "cell": cell, "seed": seed, "wall_s": wall, "threads": threads,
                "host": {"accelerator": accel}, "command": " ".join(command(plan, group, cell, seed, rid)[1:]),
                **extra}

    stored = [rec("a", 0.5, 0, 100.0), rec("a", 1.0, 0, 200.0, threads=2),  # a: mean CPU time (100 + 400) / 2
              rec("a", 1.0, 1, 30.0, accel="NVIDIA H200")]                 # a GPU run: stored, not in the mean
    results = {r["id"]: r for r in stored}
    count, hours = left_to_train(plan, results)
    # left: a tau 0.5 seed 1 (250 s; b's seed 1 is the same run, counted once), b seed 2 (b has no CPU run of
    # its own and no `minutes`: 0 s), c seed 0 (no stored run: its `minutes`, 600 s); b seed 0 is a's stored run
    assert count == 3
    assert hours == pytest.approx((250.0 + 0.0 + 600.0) / 3600)
    # a copied record's time (its original's) stands for its group's runs: b seed 2 now costs 100 s
    results["b__tau_b=0.5__seed=0"] = rec("b", 0.5, 0, 100.0, same_as="a__tau_b=0.5__seed=0")
    assert left_to_train(plan, results) == (3, pytest.approx(950.0 / 3600))


def test_the_same_training_as_a_run_in_flight_waits_for_it_and_is_copied(tmp_path, monkeypatch):
    """Two groups share one training and a third has its own; with three workers the shared one is
    trained once, not twice at once."""
    import argparse
    import time

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import runplan

    one = {"configs": ["recipes/quickstart.yaml"], "args": FAST, "grid": {"model.init_args.tau_b": [0.5]},
           "seeds": [0], "minutes": 1}
    other = dict(one, grid={"model.init_args.tau_b": [2.0]})
    plan = runplan.load_plan(_plan(tmp_path, {"a": one, "b": dict(one), "c": other}))
    started = []

    def fake_execute(plan, name, cell, seed, rid, threads):
        started.append(rid)
        time.sleep(0.3)
        cmd = runplan.command(plan, name, cell, seed, rid)
        return rid, {"id": rid, "group": name, "cell": cell, "seed": seed, "command": " ".join(cmd[1:]),
                     "wall_s": 0.3, "threads": threads, "host": {"accelerator": "cpu"}, "metrics": {}}, "done"

    monkeypatch.setattr(runplan, "execute", fake_execute)
    args = argparse.Namespace(groups=None, budget_minutes=None, dry_run=False, workers=3, by_seed=False,
                              threads=1, commit=False)
    runplan.cmd_run(plan, args)
    # a and c train (different cells), b waits for a's run and is its copy
    assert sorted(started) == ["a__tau_b=0.5__seed=0", "c__tau_b=2__seed=0"]
    copy = json.loads((tmp_path / "results" / "b__tau_b=0.5__seed=0.json").read_text())
    assert copy["same_as"] == "a__tau_b=0.5__seed=0"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("timed", [False, True])
def test_a_stopped_run_resumes_from_its_last_epoch(tmp_path, timed):
    import time

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from runplan import command, load_plan, unmeasured_attempts

    group = {"configs": ["recipes/quickstart.yaml"], "args": FAST + ["--trainer.max_epochs=3"], "seeds": [0],
             "test": True}
    path = _plan(tmp_path, {"long": group})
    rid = "long__seed=0"
    # an attempt stopped after 2 of 3 epochs (what a killed runner leaves behind)
    cmd = command(load_plan(path), "long", {}, 0, rid) + ["--trainer.max_epochs=2"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    first_attempt_s = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    if timed:  # as if the runner had started that attempt: it keeps the start in the scratch folder
        (tmp_path / "scratch" / rid / "attempts.json").write_text(json.dumps([t0]))
    import torch

    latest = tmp_path / "scratch" / rid / "csv" / "version_0" / "checkpoints" / "latest.ckpt"
    assert torch.load(latest, map_location="cpu", weights_only=False)["epoch"] == 1  # the second epoch
    assert "(1 stopped midway: resumed by the next run)" in _runplan("status", path)
    out = _runplan("run", path)
    assert "(resumed)" in out
    rec = json.loads((tmp_path / "results" / f"{rid}.json").read_text())
    assert rec["resumed_after_epochs"] == [1]
    if timed:  # wall_s is both attempts; the first ended with its last epoch's files, before the process did
        first, second = rec["attempts_s"]
        assert 0 < first <= first_attempt_s + 0.051 and rec["wall_s"] == round(first + second, 1)
        assert unmeasured_attempts(rec) == 0
    else:  # the stopped attempt was not started by the runner: its time is unknown, and said to be
        assert unmeasured_attempts(rec) == 1 and "attempts_s" not in rec
    # epochs 0-1 from the stopped attempt, epoch 2 from the resumed one; nothing trained twice
    assert [row[0] for row in rec["metrics"]["val/loss"]] == [0.0, 1.0, 2.0]
    import csv

    resumed = tmp_path / "scratch" / rid / "csv" / "version_1" / "metrics.csv"
    with open(resumed) as fh:
        assert {row["epoch"] for row in csv.DictReader(fh) if row.get("val/loss")} == {"2"}
    # and the best checkpoint over both attempts was tested
    assert "test/loss" in rec["metrics"] and "/checkpoints/best" in rec["test_command"]


def test_earlier_attempts_end_at_the_last_file_they_wrote(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from runplan import earlier_attempts_s, unmeasured_attempts

    def touch(rel, t):
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
        os.utime(f, (t, t))

    # attempt 1 started at 1000 and wrote until 1040; attempt 2 started at 1100, wrote until 1130,
    # attempt 3 started at 1200 (and rewrote the runner's files: they belong to no earlier attempt)
    touch("csv/version_0/metrics.csv", 1030.0)
    touch("csv/version_0/checkpoints/latest.ckpt", 1040.0)
    touch("csv/version_1/metrics.csv", 1130.0)
    touch("fit.log", 1250.0)
    touch("attempts.json", 1199.99)  # rewritten by attempt 3 at its start, dated a little early
    assert earlier_attempts_s(tmp_path, [1000.0, 1100.0, 1200.0]) == [40.0, 30.0]
    # an attempt that wrote nothing counts zero, not the next attempt's files
    assert earlier_attempts_s(tmp_path, [1050.0, 1100.0]) == [0.0]
    # stored records: timed ones say what they missed; older ones missed every earlier attempt
    assert unmeasured_attempts({"resumed_after_epochs": [3, 9], "attempts_s": [5.0, 6.0, 7.0]}) == 0
    assert unmeasured_attempts({"resumed_after_epochs": [3, 9], "attempts_s": [6.0, 7.0]}) == 1
    assert unmeasured_attempts({"resumed_after_epochs": [3, 9]}) == 2 and unmeasured_attempts({}) == 0


def test_merged_metrics_take_each_epoch_from_the_newest_attempt(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from runplan import merge_epoch_metrics

    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    a.write_text("epoch,step,val/loss\n0,9,5.0\n1,19,4.0\n2,29,3.5\n")   # stopped during epoch 3
    b.write_text("epoch,step,val/loss\n2,29,3.0\n3,39,2.5\n")             # resumed after epoch 1
    assert merge_epoch_metrics([a, b])["val/loss"] == [[0, 9, 5.0], [1, 19, 4.0], [2, 29, 3.0], [3, 39, 2.5]]
    c.write_text("epoch,step,val/loss,train/loss_step\n0,9,7.0,1.0\n")      # a fresh start wins its epochs
    merged = merge_epoch_metrics([a, b, c])
    assert merged["val/loss"][0] == [0, 9, 7.0] and "train/loss_step" not in merged


def test_select_ranks_by_the_mean_or_by_the_worst_seed():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from runplan import select_cells

    def rec(lr, seed, loss):
        return {"id": f"g__lr={lr}__seed={seed}", "cell": {"lr": lr}, "seed": seed,
                "metrics": {"val/loss": [[0, 0, loss + 1.0], [1, 1, loss]]}}

    # lr 7e-4: better on average (120 vs 123) but one of its seeds is far worse (140)
    recs = [rec(7e-4, 0, 100.0), rec(7e-4, 1, 140.0), rec(3e-4, 0, 122.0), rec(3e-4, 1, 124.0)]
    sel = {"keys": ["lr"], "metric": "val/loss", "mode": "min", "top": 1}
    assert select_cells(sel, recs) == [{"lr": 7e-4}]                       # mean 120 < 123
    assert select_cells(dict(sel, score="worst"), recs) == [{"lr": 3e-4}]  # worst 124 < 140
    # for a metric to maximise the worst seed is the lowest
    acc = [dict(r, metrics={"val/acc": r["metrics"]["val/loss"]}) for r in recs]
    sel = {"keys": ["lr"], "metric": "val/acc", "mode": "max", "top": 2, "score": "worst"}
    assert select_cells(sel, acc) == [{"lr": 3e-4}, {"lr": 7e-4}]          # 122 > 100
    with pytest.raises(SystemExit, match="score must be"):
        select_cells(dict(sel, score="median"), recs)


def test_the_tested_checkpoint_is_the_best_of_every_attempt(tmp_path):
    import torch

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from runplan import best_checkpoint

    def ckpt(name, score, mode="min"):
        path = tmp_path / name
        key = f"ModelCheckpoint{{'monitor': 'val/loss', 'mode': '{mode}', 'every_n_train_steps': 0}}"
        latest = "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0}"  # not the best's
        torch.save({"epoch": 3, "callbacks": {latest: {"best_model_score": torch.tensor(0.0)}, "TemperatureScheduler": {},
                                              key: {"best_model_score": torch.tensor(score)}}}, path)
        return path

    # attempt 1 reached 70.0; the resumed attempt's own first "best" is worse (72.0) and newer
    first, second = ckpt("v0_best.ckpt", 70.0), ckpt("v1_best.ckpt", 72.0)
    assert best_checkpoint([first, second]) == first
    third = ckpt("v1_best2.ckpt", 69.0)  # the resumed attempt improved on it later
    assert best_checkpoint([first, third]) == third
    # a metric to maximise: the highest score
    hi, lo = ckpt("acc_hi.ckpt", 0.9, "max"), ckpt("acc_lo.ckpt", 0.8, "max")
    assert best_checkpoint([lo, hi]) == hi
    assert best_checkpoint([lo]) == lo  # one file: nothing to load


def test_a_fit_that_ends_after_the_runner_was_stopped_is_neither_tested_nor_stored(tmp_path, monkeypatch):
    # the runner's SIGTERM reaches its fits, which Lightning ends gracefully (before lightning-discrete
    # turned that into exit status 143, with status 0): such a fit must not be taken for a finished run
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import runplan

    group = {"configs": ["recipes/quickstart.yaml"], "args": FAST, "seeds": [0], "test": True}
    plan = runplan.load_plan(_plan(tmp_path, {"g": group}))
    started = []

    def fake_run(cmd, log_path, env):  # the fit "finishes" with status 0 while the runner stops
        started.append(cmd[3])
        runplan.STOPPING.set()
        return 0

    monkeypatch.setattr(runplan, "_run_logged", fake_run)
    try:
        rid, rec, msg = runplan.execute(plan, "g", {}, 0, "g__seed=0", 1)
    finally:
        runplan.STOPPING.clear()
    assert rec is None and msg == "stopped" and started == ["fit"]  # no test command after it

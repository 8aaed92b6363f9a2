"""A sweep's results: one row per trial, the mean over seeds, the chosen configuration, the CSV.

A row is a ``dict`` with the keys of :data:`COLUMNS` (``""`` where a value does not
apply), as read back from ``trials.csv`` or built by :func:`trial_rows` from Optuna
studies. Nothing here runs a trial or draws a figure.
"""

from __future__ import annotations

import csv
import statistics
from typing import Any, Dict, Iterable, List, Optional, Tuple

__all__ = ["COLUMNS", "LOST_WORKER", "aggregate", "all_failed_message", "choose", "trial_rows", "write_csv"]

COLUMNS = ["phase", "number", "state", "tau_f", "tau_b", "tau", "lr", "seed", "value", "last", "duration_s",
           "dir", "worker", "retry_of", "error"]
"""The columns of ``trials.csv``: the phase (``grid``, ``single``, ``tau_f``, ``tau_b``), the
Optuna trial number and state, the parameters (a single-temperature trial has
``tau_f = tau_b = tau``), the score (``value``: lowest metric of the run) and the last
metric value, the duration, the trial's run folder, the worker that ran it (``host:pid``),
the number of the trial it repeats (its worker died) and its error if it failed."""

LOST_WORKER = "its worker stopped sending heartbeats (killed or lost); the cell was queued again"
"""The ``error`` of a trial failed because its worker died (no heartbeat within the grace period)."""

Row = Dict[str, Any]


def trial_rows(studies: Iterable[Any]) -> List[Row]:
    """One row per trial of the sweep's Optuna studies (every state, failed ones included).

    Args:
        studies: ``optuna.Study`` objects named ``<study_name>/<phase>`` (as the sweep
            runner creates them).

    Returns:
        the rows, study by study, in trial order.

    Examples:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.ERROR)
        >>> study = optuna.create_study(study_name="demo/grid")
        >>> study.add_trial(optuna.trial.create_trial(
        ...     params={"tau_f": 0.1, "tau_b": 1.0}, value=0.5,
        ...     distributions={k: optuna.distributions.CategoricalDistribution([0.1, 1.0]) for k in ("tau_f", "tau_b")}))
        >>> row = trial_rows([study])[0]
        >>> row["phase"], row["state"], row["tau_f"], row["tau_b"], row["value"], row["seed"]
        ('grid', 'COMPLETE', 0.1, 1.0, 0.5, '')
    """
    rows = []
    for study in studies:
        phase = study.study_name.rsplit("/", 1)[-1].split("@")[0]
        trials = study.get_trials(deepcopy=False)
        # a retry copies its trial's attributes: the last number of its history is the trial it repeats
        retried = {t.number: t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")}
        for t in trials:
            done = t.datetime_complete is not None and t.datetime_start is not None
            rows.append({
                "phase": phase,
                "number": t.number,
                "state": t.state.name,
                "tau_f": t.params.get("tau_f", t.params.get("tau", "")),
                "tau_b": t.params.get("tau_b", t.params.get("tau", "")),
                "tau": t.params.get("tau", ""),
                "lr": t.params.get("lr", ""),
                "seed": t.params.get("seed", ""),
                "value": t.value if t.value is not None else "",
                "last": t.user_attrs.get("last", ""),
                "duration_s": f"{(t.datetime_complete - t.datetime_start).total_seconds():.1f}" if done else "",
                "dir": t.user_attrs.get("dir", ""),
                "worker": t.user_attrs.get("worker", ""),
                "retry_of": retried.get(t.number, ""),
                "error": t.user_attrs.get("error", LOST_WORKER if t.state.name == "FAIL" else ""),
            })
    return rows


def aggregate(rows: Iterable[Row]) -> Dict[Tuple[float, float, Optional[float]], Tuple[float, int]]:
    """The mean score of each configuration over its complete trials (seeds, repeats).

    Args:
        rows: trial rows (:data:`COLUMNS`); rows not ``COMPLETE`` or without a value are skipped.

    Returns:
        ``{(tau_f, tau_b, lr or None): (mean value, number of trials)}``.

    Examples:
        >>> rows = [{"state": "COMPLETE", "tau_f": 0.1, "tau_b": 1.0, "lr": "", "value": v} for v in (0.2, 0.4)]
        >>> {k: (round(m, 6), n) for k, (m, n) in aggregate(rows).items()}
        {(0.1, 1.0, None): (0.3, 2)}
    """
    groups: Dict[Tuple[float, float, Optional[float]], List[float]] = {}
    for r in rows:
        if r["state"] != "COMPLETE" or r["value"] == "":
            continue
        key = (float(r["tau_f"]), float(r["tau_b"]), None if r["lr"] == "" else float(r["lr"]))
        groups.setdefault(key, []).append(float(r["value"]))
    return {k: (statistics.fmean(v), len(v)) for k, v in groups.items()}


def choose(rows: Iterable[Row]) -> Optional[Dict[str, Any]]:
    """The configuration with the lowest mean score over seeds (:func:`aggregate`).

    Args:
        rows: trial rows (:data:`COLUMNS`).

    Returns:
        ``{"tau_f", "tau_b", "lr", "value", "num_trials"}``, or None when no trial completed.

    Examples:
        >>> rows = [{"state": "COMPLETE", "tau_f": tf, "tau_b": 1.0, "lr": "", "value": v}
        ...         for tf, v in [(0.1, 0.1), (0.1, 0.9), (0.5, 0.4)]]
        >>> choose(rows)
        {'tau_f': 0.5, 'tau_b': 1.0, 'lr': None, 'value': 0.4, 'num_trials': 1}
        >>> choose([]) is None
        True
    """
    agg = aggregate(rows)
    if not agg:
        return None
    (tf, tb, lr), (v, n) = min(agg.items(), key=lambda kv: kv[1][0])
    return {"tau_f": tf, "tau_b": tb, "lr": lr, "value": v, "num_trials": n}


def write_csv(rows: Iterable[Row], path: str) -> str:
    """Write the rows as ``trials.csv`` (header :data:`COLUMNS`).

    Args:
        rows: trial rows.
        path: the file to write.

    Returns:
        ``path``.

    Examples:
        >>> import csv, os, tempfile
        >>> path = write_csv([{"phase": "grid", "state": "COMPLETE", "tau_f": 0.1, "value": 0.5}],
        ...                  os.path.join(tempfile.mkdtemp(), "trials.csv"))
        >>> row = next(csv.DictReader(open(path)))
        >>> row["tau_f"], row["value"], row["seed"]
        ('0.1', '0.5', '')
    """
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, restval="")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def all_failed_message(rows: Iterable[Row]) -> str:
    """The error message of a sweep in which no trial completed, quoting the first error.

    Args:
        rows: trial rows.

    Returns:
        one paragraph: the first trial error and how to go on.

    Examples:
        >>> all_failed_message([{"error": "ValueError: bad"}])[:64]
        'every trial of the sweep failed; the first error was: ValueError'
    """
    errors = [r["error"] for r in rows if r.get("error")]
    first = errors[0] if errors else "no trial completed"
    return (
        f"every trial of the sweep failed; the first error was: {first}. Each trial's traceback is in "
        f"its folder (error.txt); fix the config or the overrides and run the sweep again with a new "
        f"`--study_name` (or delete the output folder), since failed grid points are not retried."
    )

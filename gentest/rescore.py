"""Re-score a written report from its own files: nothing is trained or computed again.

A report folder holds every run (``leaderboard.json``'s ``runs``, with their settings, typed)
and every measure value (``measures.csv``). That is all scoring needs, so a board can be scored
again under newer rules, on a machine without the store it was made from:

    gentest rescore reports/standard            # rewrites the report in place
    gentest rescore reports/standard --out new/

What the report files cannot give back is kept from the report read: the learning curves are
not in them, so Figure 1a and the best-test-accuracy column of Table 1 are carried over as they
were drawn. The provenance keeps how the values were made and adds how they were re-scored.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import gentest
from gentest.errors import GentestError
from gentest.leaderboard import Leaderboard, MeasureValue
from gentest.scoring import NOT_EVALUATED, THRESHOLDS, ScoredRun, controls_ok, pair_weights, score_all

CARRIED_FIGURES = ("fig1a-train-loss.png",)  # drawn from learning curves, which the CSVs do not hold


def _float_or_none(text: str) -> float | None:
    if text in ("", None):
        return None
    return float(text)


def _settings_of(row: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The run's settings as scoring's axes see them (``gentest.pipeline.run_settings``), rebuilt
    from a run row of ``leaderboard.json``: dataset and model with their options, and training."""
    flat: dict[str, Any] = {"dataset": row["dataset"], "model": row["model"]}
    flat |= {f"dataset.{k}": v for k, v in (row.get("dataset_args") or {}).items()}
    flat |= {f"model.{k}": v for k, v in (row.get("model_args") or {}).items()}
    flat |= {k: v for k, v in row.items() if k.startswith("train.")}
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in flat.items()))


def _test_size(row: dict[str, Any]) -> int | None:
    from gentest.pipeline import declared_test_size

    n = row.get("n_test")
    if isinstance(n, int) and n > 0:
        return n
    return declared_test_size(row["dataset"], row.get("dataset_args") or {})


# How gentest.evaluation words an error: an exception ("ValueError: …") or a broken rule.
_ERROR_TEXT = re.compile(r"^(\w*(Error|Exception|Exit|Interrupt)\b|called sys\.exit|returned |timed out after |"
                         r"modified |changed torch's )")


def _was_not_applicable(meta: dict[str, Any], error: str | None) -> bool:
    """Whether a value-less row of a schema-1 ``measures.csv`` (which kept no n/a flag) was n/a:
    always for a measure that had no errors (every committed schema-1 board); else when its text
    is not worded as gentest words an error. :func:`load_report` checks the count against the
    errors the board reported."""
    return not meta.get("errors") or not _ERROR_TEXT.match(error or "")


def load_report(folder: str | Path) -> Leaderboard:
    """The board of a report folder, scored by the current rules (module docstring)."""
    folder = Path(folder)
    board_file, values_file = folder / "leaderboard.json", folder / "measures.csv"
    for f in (board_file, values_file):
        if not f.is_file():
            raise GentestError(f"{folder} is not a report folder that can be re-scored: {f.name} is missing")
    try:
        old = json.loads(board_file.read_text(encoding="utf-8"))
        runs_rows = old["runs"]
        old_measures = {m["name"]: m for m in old["measures"]}
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise GentestError(f"{board_file} is not a gentest leaderboard ({e})") from None
    if any(r.get("pair_key") is None or r.get("environment") is None for r in runs_rows):
        raise GentestError(f"{board_file} lacks the runs' pair keys or environments; re-render it from its store instead")

    scored_runs = [
        ScoredRun(key=r["key"], pair_key=r["pair_key"], randomization=r["randomization"], p=float(r["p"]),
                  seed=int(r["seed"]), gap=float(r["gap"]), environment=r["environment"], settings=_settings_of(r),
                  n_test=_test_size(r))
        for r in runs_rows if not r.get("replace_k")
    ]
    for row, run in zip(runs_rows, scored_runs):
        row.setdefault("n_test", run.n_test)

    values: list[MeasureValue] = []
    with values_file.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            value = _float_or_none(row["value"])
            error = row["error"] or None
            if "not_applicable" in row:
                not_applicable = row["not_applicable"] in ("True", "true", "1")
            else:  # schema 1 kept no flag
                not_applicable = value is None and _was_not_applicable(old_measures.get(row["measure"], {}), error)
            extra = {}
            u = _float_or_none(row.get("uncertainty", ""))
            if u is not None:
                extra["uncertainty"] = u
            values.append(MeasureValue(row["run_key"], row["measure"], row["version"], value, error,
                                       float(row["seconds"] or 0.0), not_applicable, extra))

    names = list(dict.fromkeys(v.measure for v in values))
    for name in names:
        errors = sum(1 for v in values if v.measure == name and v.value is None and not v.not_applicable)
        told = old_measures.get(name, {}).get("errors")
        if told is not None and errors != told:
            raise GentestError(f"{values_file} does not tell {name}'s errors from its n/a runs ({errors} look like "
                               f"errors, {board_file.name} says {told}); re-render it from its store instead")
    missing = [n for n in names if n not in old_measures]
    if missing:
        raise GentestError(f"{values_file} has values of {missing[0]}, which {board_file.name} does not list")
    by_measure: dict[str, dict[str, float | None]] = {n: {} for n in names}
    not_applicable: dict[str, dict[str, str]] = {n: {} for n in names}
    uncertainties: dict[str, dict[str, object]] = {n: {} for n in names}
    for v in values:
        by_measure[v.measure][v.run_key] = v.value
        if v.not_applicable:
            not_applicable[v.measure][v.run_key] = v.error or "does not apply"
        if "uncertainty" in v.extra and v.value is not None:
            uncertainties[v.measure][v.run_key] = v.extra["uncertainty"]
    measures = [(n, old_measures[n]["family"], old_measures[n]["orientation"]) for n in names]
    if values:
        scores = score_all(measures, scored_runs, by_measure, not_applicable_by_measure=not_applicable,
                           uncertainties_by_measure=uncertainties)
        ok, message = controls_ok(scores)
    else:
        scores, ok, message = [], False, NOT_EVALUATED

    carried: dict[str, Any] = {"table1": old.get("table1") or []}
    figures = {}
    for name in CARRIED_FIGURES:
        png = folder / "figures" / name
        if png.is_file():
            figures[name] = ("Fig. 1a: train loss per randomization", png.read_bytes())
    carried["figures"] = figures
    provenance = dict(old.get("provenance") or {})
    provenance["rescored_by"] = f"gentest {gentest.__version__} rescore (scoring schema 2; values as measured)"
    return Leaderboard(
        suite=old["suite"],
        gentest_version=gentest.__version__,
        runs=runs_rows,
        curves={},
        measures=scores,
        values=values,
        controls_ok=ok,
        controls_message=message,
        thresholds=dict(THRESHOLDS),
        provenance=provenance,
        pair_weights=pair_weights(scored_runs),
        carried=carried,
    )

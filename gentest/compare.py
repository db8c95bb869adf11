"""Two leaderboards of one suite, verdict by verdict: does a finding survive another machine?

The same suite trained on another machine or with another thread count gives other networks
(CPU floating point differs and SGD amplifies it), so the measure values differ. Verdicts rest
on the interval over seeds, so what may change is this:

- a verdict moves between a definite verdict and ``inconclusive``: the interval touches a
  threshold in one report and not in the other. That is the interval rule doing its job: the
  sample cannot decide, and one of the two reports says so;
- a verdict moves between ``unreliable`` (the interval lies in (0.1, 0.5)) and ``chance`` (it
  reaches 0.5): both say the sign-error lies between 0.1 and 0.9, one of them also excludes 0.5.
  A *refinement*, not a contradiction;
- a verdict moves between two definite verdicts whose claimed ranges of the sign-error do not
  overlap (``separates`` against ``unreliable``, ``chance`` or ``inverts``; ``inverts`` against
  ``unreliable`` or ``chance``): a *contradiction*. One of the two findings is wrong, and more
  pairs are needed before either is reported (:func:`gentest.scoring.claims_contradict`).

Boards of schema 1 (before weighted pairs) said ``fails`` for ``unreliable`` and ``chance``
together; it claims the range (0.1, 0.9) and compares accordingly.

This module reads only the reports' ``leaderboard.json`` (pure data, nothing is recomputed).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gentest.errors import GentestError
from gentest.scoring import INCONCLUSIVE, claims_contradict


@dataclass(frozen=True)
class VerdictChange:
    measure: str
    verdict_a: str
    verdict_b: str
    sign_error_a: float | None
    sign_error_b: float | None

    @property
    def contradicts(self) -> bool:
        return claims_contradict(self.verdict_a, self.verdict_b)

    @property
    def kind(self) -> str:
        """"contradicts", "refines" (between two definite verdicts that agree on a range) or "moves"
        (to or from inconclusive, error or n/a)."""
        if self.contradicts:
            return "contradicts"
        return "refines" if INCONCLUSIVE not in (self.verdict_a, self.verdict_b) and not {
            self.verdict_a, self.verdict_b} & {"error", "n/a"} else "moves"


@dataclass
class Comparison:
    suite: str
    n_measures: int
    changes: list[VerdictChange] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    same_runs: bool = True
    inconclusive_a: int = 0
    inconclusive_b: int = 0

    @property
    def contradictions(self) -> list[VerdictChange]:
        return [c for c in self.changes if c.contradicts]

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "n_measures": self.n_measures, "same_runs": self.same_runs,
            "inconclusive_a": self.inconclusive_a, "inconclusive_b": self.inconclusive_b,
            "changes": [{**asdict(c), "contradicts": c.contradicts, "kind": c.kind} for c in self.changes],
            "only_a": self.only_a, "only_b": self.only_b,
        }


def load_leaderboard(path: str | Path) -> dict[str, Any]:
    """A report folder's ``leaderboard.json`` (or that file itself), with one sentence if it is
    missing or is not a gentest leaderboard."""
    p = Path(path)
    if not p.exists():
        raise GentestError(f"{path} does not exist (give a report folder or its leaderboard.json)")
    file = p / "leaderboard.json" if p.is_dir() else p
    if not file.is_file():
        raise GentestError(f"{path} is not a report: no {file.name} there (give a report folder or its leaderboard.json)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GentestError(f"{file} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("measures"), list) or "suite" not in data:
        raise GentestError(f"{file} is not a gentest leaderboard (it lacks 'suite' or 'measures')")
    return data


def compare(a: dict[str, Any], b: dict[str, Any]) -> Comparison:
    """Verdict changes from leaderboard ``a`` to leaderboard ``b`` of the same suite."""
    if a["suite"] != b["suite"]:
        raise GentestError(f"the reports are of different suites ('{a['suite']}' and '{b['suite']}'); "
                           "compare two reports of one suite")
    va = {m["name"]: m for m in a["measures"]}
    vb = {m["name"]: m for m in b["measures"]}
    common = [name for name in va if name in vb]
    result = Comparison(
        suite=a["suite"], n_measures=len(common),
        only_a=sorted(set(va) - set(vb)), only_b=sorted(set(vb) - set(va)),
        same_runs=_run_keys(a) == _run_keys(b),
        inconclusive_a=sum(va[n]["verdict"] == INCONCLUSIVE for n in common),
        inconclusive_b=sum(vb[n]["verdict"] == INCONCLUSIVE for n in common),
    )
    for name in common:
        x, y = va[name], vb[name]
        if x["verdict"] != y["verdict"]:
            result.changes.append(VerdictChange(name, x["verdict"], y["verdict"], x.get("sign_error"), y.get("sign_error")))
    # Contradictions first: they are what a reader must see.
    result.changes.sort(key=lambda c: (not c.contradicts, c.measure))
    return result


def _run_keys(board: dict[str, Any]) -> set[str]:
    return {r["key"] for r in board.get("runs", []) if isinstance(r, dict) and "key" in r}


def render(c: Comparison, name_a: str, name_b: str) -> list[str]:
    """The comparison as lines of plain text, contradictions first."""
    lines = [f"suite {c.suite}: {c.n_measures} measures in both reports; "
             f"inconclusive: {c.inconclusive_a} in A, {c.inconclusive_b} in B",
             f"  A = {name_a}", f"  B = {name_b}"]
    if not c.same_runs:
        lines.append("note: the reports cover different runs (other seeds or settings); "
                     "verdicts may differ for that reason alone")
    for change in c.changes:
        kind = {"contradicts": "CONTRADICTS", "refines": "refines", "moves": "moves"}[change.kind]
        lines.append(f"{kind:>11}  {change.measure}: {change.verdict_a} -> {change.verdict_b} "
                     f"(sign-error {_num(change.sign_error_a)} -> {_num(change.sign_error_b)})")
    if c.only_a or c.only_b:
        lines.append(f"only in A: {', '.join(c.only_a) or 'none'}; only in B: {', '.join(c.only_b) or 'none'}")
    n, k = len(c.changes), len(c.contradictions)
    refined = sum(ch.kind == "refines" for ch in c.changes)
    lines.append(f"{n} of {c.n_measures} verdicts differ: {k} contradict (definite verdicts whose claims exclude "
                 f"each other), {refined} refine (unreliable and chance, or a schema-1 'fails'), "
                 f"{n - k - refined} move to or from inconclusive")
    return lines


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"

"""Reports: one output folder per evaluation, and the leaderboard as a rich table.

``write_report`` writes into a folder:

* ``leaderboard.json``: ``Leaderboard.to_json()``, the stable machine interface (NaN and
  infinities become ``null``), with how the report was made (``provenance``) and the Table 1
  rows (``table1``) added;
* ``leaderboard.md``: how it was made, the leaderboard, the sign-error heatmap and Figure 1
  (as links to the PNGs), the Table 1-style table, the verdict thresholds, how to read it, the
  runs and the errors, as GitHub-renderable Markdown;
* ``leaderboard.html``: the same content, self-contained, with every figure embedded as a
  base64 PNG: the heatmap of sign-error per measure and environment (the headline), Figure 1a
  (train loss per randomization, one panel per environment), Figure 1b (time to fit relative
  to natural labels against p) and 1c (test error against p) where an environment sweeps p,
  and each measure's values on natural vs randomized runs as small multiples;
* ``figures/*.png``: every figure of the HTML as its own file, for papers and READMEs;
* ``runs.csv``: one row per run; ``measures.csv``: one row per measure value, joined with the
  run's dataset, model, randomization, p, seed and whole environment (model options and
  training settings), so that runs that differ only in an option never merge.

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, so a crash never leaves half a report; the figures folder is replaced whole.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import math
import numbers
import os
import platform
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.table import Table
from rich.text import Text

from gentest import plots
from gentest.leaderboard import RUN_KEYS, Leaderboard, MeasureScore

__all__ = [
    "write_report", "leaderboard_table", "json_safe", "fmt", "fmt_ci", "fmt_pct", "fmt_worst", "provenance",
    "table1_rows", "render_figures", "controls_exit_code",
    "REPORT_FILES", "RUN_COLUMNS", "MEASURE_VALUE_COLUMNS", "FIGURES_DIR",
]

DASH = "—"
REPORT_FILES = ("leaderboard.json", "leaderboard.md", "leaderboard.html", "runs.csv", "measures.csv")
FIGURES_DIR = "figures"
MEASURE_VALUE_COLUMNS = ("run_key", "measure", "version", "value", "error", "seconds")
# Joined onto measures.csv from the run: the environment and its parts tell runs apart.
RUN_COLUMNS = ("dataset", "model", "randomization", "p", "seed")
ENVIRONMENT_COLUMNS = ("environment", "dataset_args", "model_args")
VERDICT_STYLES = {"separates": "green", "inverts": "yellow", "inconclusive": "cyan", "unreliable": "magenta", "chance": "dim",
                  "error": "red", "n/a": "blue"}
NOT_EVALUATED_LINE = "Nothing has been evaluated yet: the store holds these runs but no measure values. Run gentest evaluate to score measures on them."

HOW_TO_READ = (
    "Each natural run is paired with randomized twins trained with identical settings; only the "
    "labels or the pixels differ, so the twin that memorized noise has the larger generalization "
    "gap. A pair's sign-error is 0 (the measure orders the pair like the gap), 1 (it inverts the "
    "pair) or 0.5 (a tie, or a difference within the measure's own recorded noise: undecided). "
    "Pairs are weighted as Dziugaite et al. (2020) weight them, by the Hoeffding confidence that "
    "the two gaps really differ at the test sets' sizes, (ψ − ½)₊: a pair whose gaps are closer "
    "than the test sets can resolve (|Δg| < 0.062 at 1,000 test points) has weight 0 and is left "
    "out. The sign-error is the weighted mean (the unweighted one is beside it); its 95 % interval "
    "is Clopper–Pearson on the effective number of pairs (Kish's (Σw)²/Σw², divided by the design "
    "effect of pairs that share a natural network). An environment is one architecture × training "
    "setting × randomization; the worst environment (Dziugaite et al.'s robust score) is taken "
    "over the environments whose effective sample size reaches the threshold, and measures are "
    "ranked by it; thinner environments are shown (marked * in the heatmap) but left out. "
    "Verdicts: separates (the whole interval ≤ 0.1), inverts (≥ 0.9), unreliable (inside 0.1–0.5: "
    "orders most pairs, not reliably), chance (reaches 0.5, or lies in 0.5–0.9: no better than "
    "chance, or ties), inconclusive (reaches 0.1 or 0.9 from in between: more pairs would decide). "
    "CMI K is Jiang et al.'s (2020) conditional-independence score over all pairs of runs: the "
    "normalized conditional mutual information between the order of the measure and the order of "
    "the gap, minimised over conditioning sets of up to two axes (higher is better; it has no sign). "
    "AUROC scores the oriented measure as a classifier of randomized (positive) vs natural runs, "
    "with its bootstrap range over seeds; Kendall's τ-b correlates it with the gap where the suite "
    "sweeps label corruption p; Ψ is Jiang et al.'s granulated consistency. A measure that cannot "
    "separate a network that learned from one that memorized noise cannot explain generalization."
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:110em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:.8em;width:100%}
th,td{border:1px solid #ccc;padding:.2em .4em;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.reason{min-width:18em}
tr:nth-child(even) td{background:#fafafa}
.scroll{overflow-x:auto}
.ok{color:#1a7f37;font-weight:bold}.broken{color:#b00;font-weight:bold}.pending{color:#9a6700;font-weight:bold}
.v-separates{color:#1a7f37;font-weight:bold}.v-inverts{color:#9a6700;font-weight:bold}
.v-inconclusive{color:#0969da}.v-unreliable{color:#8250df}.v-chance{color:#777}.v-error{color:#b00;font-weight:bold}
code{font-size:.9em}img{max-width:100%;display:block;margin:.5em 0}
.plots{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.note{color:#666}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:.5em}
.grid img{width:100%;margin:0}
dl.prov{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;font-size:.85em}dl.prov dt{color:#555}
dl.prov dd{margin:0;font-family:ui-monospace,monospace;overflow-wrap:anywhere}
"""


# -- formatting -----------------------------------------------------------------------------------

def _is_num(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def fmt(x: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals (ints as they are); None and non-finite floats as "—"."""
    if x is None:
        return DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, numbers.Integral):
        return str(int(x))
    if _is_num(x):
        return f"{float(x):.{digits}f}" if math.isfinite(x) else DASH
    return str(x)


def fmt_ci(value: float | None, ci: Iterable[float] | None, digits: int = 2) -> str:
    """``0.12 [0.05, 0.20]``; the value alone without an interval, "—" without a value."""
    if value is None or (_is_num(value) and not math.isfinite(value)):
        return DASH
    if ci is None:
        return fmt(value, digits)
    lo, hi = ci
    return f"{fmt(value, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def fmt_pct(x: Any, digits: int = 1) -> str:
    """A fraction as a percentage without the sign: 0.987 -> "98.7"; None -> "—"."""
    return fmt(x * 100, digits) if _is_num(x) and math.isfinite(x) else DASH


def fmt_worst(m: MeasureScore, digits: int = 2) -> str:
    """Worst-environment sign-error and where: ``0.50 (mlp × labels)``."""
    s = fmt(m.worst_env_sign_error, digits)
    return f"{s} ({m.worst_env})" if m.worst_env and m.worst_env_sign_error is not None else s


def _fmt_p(run: Mapping[str, Any]) -> str:
    p = run.get("p")
    return f"{p:g}" if _is_num(p) and math.isfinite(p) else fmt(p)


# -- JSON and atomic writes ------------------------------------------------------------------------

def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps(allow_nan=False)`` accepts: non-finite floats become None,
    tuples lists, mapping keys strings, numpy scalars Python numbers, anything else its str."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    item = getattr(obj, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    return str(obj)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to a temporary file next to ``path`` and move it into place."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _csv_text(header: list[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in header})
    return buf.getvalue()


def _csv_cell(x: Any) -> Any:
    """None -> empty cell; floats as repr (shortest round-trip, full precision); nested values as JSON."""
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, (Mapping, list, tuple)):
        return json.dumps(json_safe(x), sort_keys=True)
    return x


# -- how the report was made ------------------------------------------------------------------------

# Keys of run rows that say where a run was trained, shown in the report when present.
TRAINING_PLATFORM_KEYS = ("device", "torch_threads", "cpu_capability", "cpu")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def provenance(board: Leaderboard | None = None, command: Sequence[str] | None = None) -> dict[str, Any]:
    """How a report was made: the command line (default ``sys.argv``), versions, platform, CPU
    model and ISA, threads, and the devices (and, where runs record them, threads and CPUs) that
    trained the runs."""
    argv = list(sys.argv if command is None else command)
    if command is None and argv:
        argv[0] = os.path.basename(argv[0]) or argv[0]
    import numpy

    import gentest

    out: dict[str, Any] = {
        "command": shlex.join(str(a) for a in argv),
        "gentest": gentest.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }
    try:
        import torch

        out["torch"] = torch.__version__
        out["threads"] = torch.get_num_threads()
        try:
            out["isa"] = torch.backends.cpu.get_cpu_capability()
        except AttributeError:
            pass
        out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # reports need no torch; say so rather than fail
        out["torch"] = None
    out["platform"] = platform.platform()
    out["machine"] = platform.machine()
    out["cpu_model"] = _cpu_model()
    if board is not None:
        for key in TRAINING_PLATFORM_KEYS:
            seen = sorted({str(r[key]) for r in board.runs if r.get(key) is not None})
            if seen:
                out[f"runs_{key}"] = ", ".join(seen)
    return out


PROVENANCE_LABELS = {
    "command": "command", "gentest": "gentest", "torch": "torch", "numpy": "numpy", "python": "python",
    "threads": "torch threads (report)", "isa": "CPU ISA (torch)", "cuda": "GPU", "platform": "platform",
    "machine": "machine", "cpu_model": "CPU model", "runs_device": "runs trained on",
    "runs_torch_threads": "runs' torch threads", "runs_cpu_capability": "runs' CPU ISA", "runs_cpu": "runs' CPU model",
}


def _provenance_items(prov: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(PROVENANCE_LABELS.get(k, k.replace("_", " ")), str(v)) for k, v in prov.items() if v is not None]


# -- the pieces shared by Markdown and HTML --------------------------------------------------------

LEADERBOARD_HEADER = (
    "rank", "measure", "family", "orientation", "verdict", "sign-error [95% CI]", "unweighted", "worst env sign-error",
    "env mean / p90 / max", "CMI K", "AUROC [seeds]", "Kendall τ-b", "Ψ", "pairs (effective)", "ties", "undecided",
    "errors", "reason",
)
ENVIRONMENTS_HEADER = ("id", "environment", "pairs", "weight 0", "effective sample", "in the worst case")
CMI_HEADER_START = ("measure", "CMI K", "attained at", "PGDL variant")
CMI_NOTE = (
    "Over every ordered pair of runs (not only twins): the mutual information between 'the measure is "
    "larger' and 'the gap is larger', conditioned on the two runs' values of a set of axes and divided "
    "by the conditional entropy of the gap's order; K is the minimum over every set of up to two axes "
    "(Jiang et al. 2020, section 5). 0: the measure says nothing about the gap's order beyond the "
    "hyper-parameters; 1: it determines it. It has no sign: read it beside the sign-error. The PGDL "
    "variant is the NeurIPS 2020 competition's: pairs of axes only, self-pairs included, cells "
    "averaged uniformly."
)
RUNS_HEADER = ("run", "environment", "randomization", "p", "seed", "train acc %", "test acc %", "gap %", "steps to fit")
TABLE1_HEADER = ("setting", "randomization", "seeds", "train acc %", "test acc %", "best test acc % (early stop)", "steps to fit")
ERRORS_HEADER = ("measure", "run", "error")
NUMERIC = {"rank", "sign-error [95% CI]", "AUROC [95% CI]", "AUROC [seeds]", "Kendall τ-b", "Ψ", "pairs", "ties", "undecided",
           "errors", "unweighted", "env mean / p90 / max", "CMI K", "pairs (effective)", "PGDL variant", "weight 0",
           "effective sample",
           "p", "seed", "seeds", "train acc %", "test acc %", "gap %", "steps to fit", "best test acc % (early stop)"}
WIDE_TEXT = {"reason", "worst env sign-error", "environment", "setting"}


def _short_env(env: str | None, ids: Mapping[str, str]) -> str | None:
    """``E3/labels(p=0.5)`` for a pair environment whose setting has a short name."""
    if not env:
        return env
    setting, _, kind = env.rpartition("/")
    return f"{ids[setting]}/{kind}" if setting in ids else env


def _leaderboard_rows(board: Leaderboard) -> list[list[str]]:
    ids = plots.environment_ids(board.runs)
    ids = ids if len(ids) > 1 else {}  # one environment: its name is short enough, and said once

    def worst(m: MeasureScore) -> str:
        return fmt_worst(dataclasses.replace(m, worst_env=_short_env(m.worst_env, ids)))

    def quantiles(m: MeasureScore) -> str:
        q = m.env_quantiles or {}
        return DASH if q.get("max") is None else " / ".join(fmt(q.get(k)) for k in ("mean", "p90", "max"))

    def pairs(m: MeasureScore) -> str:
        return f"{m.n_pairs} ({m.n_effective:.1f})" if m.n_pairs else "0"

    return [
        [str(i), m.name, m.family, m.orientation, m.verdict, fmt_ci(m.sign_error, m.sign_error_ci),
         fmt(m.sign_error_unweighted), worst(m), quantiles(m), fmt(m.cmi), fmt_ci(m.auroc, m.auroc_ci), fmt(m.kendall_tau),
         fmt(m.psi), pairs(m), str(m.n_ties), str(m.n_undecided), str(m.errors), m.reason or ""]
        for i, m in enumerate(board.measures, 1)
    ]


def environment_summary(board: Leaderboard) -> list[dict[str, Any]]:
    """Per pair environment: its pairs, how many have weight 0, its effective sample size and
    whether it reaches the threshold of the worst case. From ``control.gap``, which has a value on
    every run (else the measure with the most environments)."""
    scored = [m for m in board.measures if m.env_ess]
    if not scored:
        return []
    ref = next((m for m in scored if m.name == "control.gap"), max(scored, key=lambda m: len(m.env_ess)))
    threshold = board.thresholds.get("min_env_ess", 0)
    pairs: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for v in board.pair_weights:
        pairs[v["environment"]].append(v)
    rows = []
    for env in sorted(set(ref.env_ess) | set(pairs), key=plots.env_sort_key):
        members = pairs.get(env, [])
        ess = ref.env_ess.get(env, 0.0)
        rows.append({"environment": env, "pairs": len(members), "weight_zero": sum(1 for v in members if v["weight"] <= 0),
                     "ess": ess, "kept": ess >= threshold - 1e-9 and env in ref.env_ess})
    return rows


def _environment_rows(board: Leaderboard) -> list[list[str]]:
    ids = plots.environment_ids(board.runs)
    return [[_short_env(r["environment"], ids) if len(ids) > 1 else r["environment"].rpartition("/")[2], r["environment"],
             str(r["pairs"]), str(r["weight_zero"]), f"{r['ess']:.1f}", "yes" if r["kept"] else "no"]
            for r in environment_summary(board)]


def _environments_line(board: Leaderboard) -> str:
    rows = environment_summary(board)
    if not rows:
        return ""
    kept = sum(r["kept"] for r in rows)
    threshold = board.thresholds.get("min_env_ess", 0)
    zero = sum(r["weight_zero"] for r in rows)
    total = sum(r["pairs"] for r in rows)
    line = (f"{kept} of {len(rows)} environments reach the effective sample size {threshold:g} that the worst case "
            f"needs (Dziugaite et al.); the others are shown but left out of it")
    if not kept:
        line += ", so no measure has a robust (worst-environment) score on this board: add seeds or pairs"
    line += f". {zero} of {total} pairs have weight 0 (gaps closer than the test sets resolve)."
    return line


def _cmi_sets(board: Leaderboard) -> list[str]:
    return list(dict.fromkeys(k for m in board.measures for k in (m.cmi_by_set or {})))


def _cmi_rows(board: Leaderboard) -> list[list[str]]:
    sets = _cmi_sets(board)
    ranked = sorted((m for m in board.measures if m.cmi is not None), key=lambda m: (-m.cmi, m.name))
    return [[m.name, fmt(m.cmi, 3), m.cmi_set or DASH, fmt(m.cmi_pgdl, 3)] + [fmt(m.cmi_by_set.get(k), 3) for k in sets]
            for m in ranked]


def _runs_rows(board: Leaderboard) -> list[list[str]]:
    return [
        [str(r.get("key", "")), plots.environment_of(r), str(r.get("randomization", "")),
         _fmt_p(r), fmt(r.get("seed")), fmt_pct(r.get("train_acc")), fmt_pct(r.get("test_acc")), fmt_pct(r.get("gap")),
         fmt(r.get("steps_to_fit"), 0)]
        for r in board.runs
    ]


def _error_rows(board: Leaderboard) -> list[list[str]]:
    # A measure that does not apply is not an error: its reason is in the leaderboard row.
    return [[v.measure, v.run_key, str(v.error)] for v in board.values if v.error and not v.not_applicable]


def _controls_line(board: Leaderboard) -> str:
    if not board.evaluated:
        return NOT_EVALUATED_LINE
    if board.controls_ok:
        return "Controls: OK"
    msg = board.controls_message or "the natural/randomized controls did not score as they must."
    return f"Controls failed: {msg}"


def controls_exit_code(board: Leaderboard, stream: TextIO | None = None) -> int:
    """0, or 1 with one sentence on ``stream`` (stderr) when the controls failed.

    A board with nothing evaluated yet has nothing that failed: 0.
    """
    if board.controls_ok or not board.evaluated:
        return 0
    print(f"gentest: controls failed: {board.controls_message or 'the controls did not score as they must.'}",
          file=stream or sys.stderr)
    return 1


# -- Table 1 ---------------------------------------------------------------------------------------

def _mean_sd(xs: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not xs:
        return DASH
    mean = statistics.fmean(xs) * scale
    if len(xs) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(xs) * scale:.{digits}f}"


def _best_test_acc(curve: Sequence[Mapping[str, Any]] | None) -> float | None:
    accs = [row.get("test_acc") for row in curve or ()]
    accs = [float(a) for a in accs if _is_num(a) and math.isfinite(a)]
    return max(accs) if accs else None


def table1_rows(board: Leaderboard) -> list[dict[str, Any]]:
    """Zhang et al.'s Table 1 for this suite: per setting (model with options × training recipe)
    and randomization, train and test accuracy over seeds (mean and sample sd), the best test
    accuracy along training (the paper's early-stopping column, from each run's stored curve),
    and steps to fit. Settings in order of first appearance, randomizations natural first."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    order: dict[str, int] = {}
    for r in board.runs:
        env = plots.environment_of(r)
        order.setdefault(env, len(order))
        groups[(env, plots.kind_label(r))].append(r)
    kind_rank = {k: i for i, k in enumerate(plots.kind_order(board.runs))}
    rows = []
    for (env, kind), members in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kind_rank[kv[0][1]])):
        def values(key: str) -> list[float]:
            return [float(r[key]) for r in members if _is_num(r.get(key)) and math.isfinite(r[key])]

        best = [b for b in (_best_test_acc(board.curves.get(r.get("key"))) for r in members) if b is not None]
        steps = values("steps_to_fit")
        rows.append({
            "setting": env, "randomization": kind, "seeds": len(members),
            "train_acc": values("train_acc"), "test_acc": values("test_acc"), "best_test_acc": best,
            "steps_to_fit": steps, "unfit": len(members) - len(steps),
        })
    return rows


def _table1_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for row in rows:
        steps = _mean_sd(row["steps_to_fit"], scale=1.0, digits=0)
        if row["unfit"]:
            steps += f" ({row['unfit']} not fit)"
        out.append([row["setting"], row["randomization"], str(row["seeds"]), _mean_sd(row["train_acc"]),
                    _mean_sd(row["test_acc"]), _mean_sd(row["best_test_acc"]), steps])
    return out


def _table1_cells_of(board: Leaderboard) -> list[list[str]]:
    """Table 1's cells: from the runs and their curves, or, for a re-scored report whose CSVs
    carry no curves, the rows of the report it was re-scored from."""
    if board.carried.get("table1") and not any(board.curves.values()):
        return [[r["setting"], r["randomization"], str(r["seeds"])]
                + [_mean_sd_json(r.get(k) or {}, 1.0 if k == "steps_to_fit" else 100.0, 0 if k == "steps_to_fit" else 1)
                   for k in ("train_acc", "test_acc", "best_test_acc", "steps_to_fit")]
                for r in board.carried["table1"]]
    return _table1_cells(table1_rows(board))


def _mean_sd_json(summary: Mapping[str, Any], scale: float, digits: int) -> str:
    mean, sd = summary.get("mean"), summary.get("sd")
    if mean is None:
        return DASH
    return f"{mean * scale:.{digits}f}" + (f" ± {sd * scale:.{digits}f}" if sd is not None else "")


def _table1_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def summary(xs: list[float]) -> dict[str, Any]:
        return {"mean": statistics.fmean(xs) if xs else None, "sd": statistics.stdev(xs) if len(xs) > 1 else None, "n": len(xs)}

    return [{"setting": r["setting"], "randomization": r["randomization"], "seeds": r["seeds"],
             **{k: summary(r[k]) for k in ("train_acc", "test_acc", "best_test_acc", "steps_to_fit")}} for r in rows]


# -- figures ---------------------------------------------------------------------------------------

def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "measure"


def _measure_names(board: Leaderboard) -> list[str]:
    names = [m.name for m in board.measures]
    names += sorted({v.measure for v in board.values} - set(names))
    return names


def render_figures(board: Leaderboard) -> tuple[dict[str, tuple[str, bytes]], list[str]]:
    """Every figure of the report: file name -> (caption, PNG bytes), in reading order; and a
    note per figure that could not be drawn (a failing plot must not cost the tables)."""
    figures: dict[str, tuple[str, bytes]] = {}
    notes: list[str] = []

    def add(filename: str, caption: str, draw: Callable[[], bytes | None]) -> None:
        try:
            png = draw()
        except Exception as exc:  # noqa: BLE001 - the tables are worth more than one plot
            warnings.warn(f"gentest report: plot '{caption}' failed: {exc!r}", RuntimeWarning, stacklevel=2)
            notes.append(f"{caption} could not be drawn: {exc!r}")
            return
        if png is not None:
            figures[filename] = (caption, png)

    ids = plots.environment_ids(board.runs)
    add("heatmap-sign-error.png", "sign-error per measure and environment", lambda: plots.sign_error_heatmap(board.measures, ids))
    add("env-sign-errors.png", "per-environment sign-errors: mean, p90, max (Dziugaite et al.)",
        lambda: plots.env_sign_error_distribution(board.measures))
    carried = board.carried.get("figures", {})
    if "fig1a-train-loss.png" in carried and not any(board.curves.values()):
        figures["fig1a-train-loss.png"] = carried["fig1a-train-loss.png"]  # drawn from curves the CSVs do not hold
    else:
        add("fig1a-train-loss.png", "Fig. 1a: train loss per randomization",
            lambda: plots.loss_curves_by_environment(board.runs, board.curves) if board.runs else None)
    add("fig1b-time-to-fit.png", "Fig. 1b: time to fit relative to natural labels", lambda: plots.time_to_fit_relative(board.runs))
    add("fig1c-test-error.png", "Fig. 1c: test error against label corruption", lambda: plots.test_error_vs_p(board.runs))
    orientation = {m.name: m.orientation for m in board.measures}
    by_measure: dict[str, list[Any]] = defaultdict(list)
    for v in board.values:
        by_measure[v.measure].append(v)
    for name in _measure_names(board):
        mine = by_measure.get(name, [])
        if not any(v.error is None and _is_num(v.value) and math.isfinite(v.value) for v in mine):
            continue
        add(f"measure-{_safe_name(name)}.png", f"{name} values",
            lambda n=name, vs=mine: plots.measure_values(n, board.runs, vs, orientation.get(n), small=True))
    return figures, notes


# -- Markdown --------------------------------------------------------------------------------------

_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")


def _md_cell(text: Any) -> str:
    """One table cell: one line, pipes escaped, and no raw HTML: only a ``<`` that would open a
    tag and an ``&`` that would start an entity are escaped, so ``<= 0.1`` and ``a & b`` read as
    written."""
    s = _ENTITY.sub("&amp;", str(text))
    s = _TAG_START.sub("&lt;", s).replace("|", "\\|")
    return " ".join(s.split())


def _md_table(header: Iterable[str], rows: list[list[str]]) -> list[str]:
    header = list(header)
    align = ["---:" if h in NUMERIC else "---" for h in header]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(board: Leaderboard, figures: Mapping[str, tuple[str, bytes]] | None = None) -> str:
    """The report as GitHub-renderable Markdown; figures as links into ``figures/``."""
    figures = figures or {}
    out = [
        f"# gentest leaderboard: {_md_cell(board.suite)}",
        "",
        f"gentest {_md_cell(board.gentest_version)} · {len(board.runs)} runs · {len(board.measures)} measures",
        "",
        f"**{_md_cell(_controls_line(board))}**" if not board.controls_ok else _controls_line(board),
        "",
    ]
    if board.provenance:
        out += ["## How this report was made", ""]
        out += [f"- {_md_cell(k)}: `{_md_cell(v)}`" for k, v in _provenance_items(board.provenance)]
        out.append("")
    out += ["## Leaderboard", ""]
    out += _md_table(LEADERBOARD_HEADER, _leaderboard_rows(board)) if board.measures else [
        "No measures were scored." if board.evaluated else NOT_EVALUATED_LINE]
    ids = plots.environment_ids(board.runs)
    if len(ids) > 1:
        out += ["", "Environments (E1, E2, ... in the table and the figures):", ""]
        out += [f"- {i}: `{_md_cell(env)}`" for env, i in ids.items()]
    env_rows = _environment_rows(board)
    if env_rows:
        out += ["", "## Environments and their effective sample sizes", "", _md_cell(_environments_line(board)), ""]
        out += _md_table(ENVIRONMENTS_HEADER, env_rows)
    cmi_rows = _cmi_rows(board)
    if cmi_rows:
        out += ["", "## Conditional mutual information (Jiang et al. 2020)", "", _md_cell(CMI_NOTE), ""]
        out += _md_table(CMI_HEADER_START + tuple(f"I | {k}" for k in _cmi_sets(board)), cmi_rows)
    main = [(f, c) for f, (c, _) in figures.items() if not f.startswith("measure-")]
    if main:
        out += ["", "## Figures", ""]
        out += [f"![{_md_cell(c)}]({FIGURES_DIR}/{f})" for f, c in main]
    table1 = _table1_cells_of(board)
    if table1:
        out += ["", "## Table 1: accuracy per setting and randomization", ""]
        out += _md_table(TABLE1_HEADER, table1)
        out += ["", "Mean ± sample standard deviation over seeds. Best test accuracy is the highest test "
                    "accuracy along training (the paper's early stopping), from each run's curve."]
    out += ["", "## Verdict thresholds", ""]
    if board.thresholds:
        out += [f"- `{_md_cell(k)}`: {_md_cell(_fmt_threshold(v))}" for k, v in board.thresholds.items()]
    else:
        out.append("No thresholds recorded.")
    out += ["", "## How to read this", "", HOW_TO_READ, "", "## Runs", ""]
    out += _md_table(RUNS_HEADER, _runs_rows(board)) if board.runs else ["No runs."]
    errors = _error_rows(board)
    if errors:
        out += ["", "## Errors", ""]
        out += [f"- **{_md_cell(m)}** on `{_md_cell(k)}`: {_md_cell(e)}" for m, k, e in errors]
    return "\n".join(out) + "\n"


def _fmt_threshold(v: Any) -> str:
    return f"{v:g}" if _is_num(v) and math.isfinite(v) else fmt(v)


# -- HTML ------------------------------------------------------------------------------------------

def _h(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _html_table(header: Iterable[str], rows: list[list[str]], row_class: Callable[[list[str]], dict[int, str]] | None = None) -> str:
    header = list(header)
    parts = ['<div class="scroll"><table>', "<thead><tr>" + "".join(f"<th>{_h(c)}</th>" for c in header) + "</tr></thead>", "<tbody>"]
    for row in rows:
        extra = row_class(row) if row_class else {}
        cells = []
        for i, (name, c) in enumerate(zip(header, row)):
            classes = " ".join(filter(None, ["num" if name in NUMERIC else "", "reason" if name == "reason" else "", extra.get(i, "")]))
            cells.append(f"<td class=\"{classes}\">{_h(c)}</td>" if classes else f"<td>{_h(c)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    return "\n".join(parts)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_h(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def render_html(board: Leaderboard, figures: Mapping[str, tuple[str, bytes]] | None = None,
                notes: Sequence[str] = ()) -> str:
    """The report as one self-contained HTML page: inline CSS, figures as data: URIs, no scripts."""
    if figures is None:
        figures, notes = render_figures(board)
    verdict_col = LEADERBOARD_HEADER.index("verdict")
    status = "ok" if board.controls_ok else ("broken" if board.evaluated else "pending")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>gentest leaderboard: {_h(board.suite)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>gentest leaderboard: {_h(board.suite)}</h1>",
        f"<p>gentest {_h(board.gentest_version)} · {len(board.runs)} runs · {len(board.measures)} measures</p>",
        f'<p class="{status}">{_h(_controls_line(board))}</p>',
    ]
    if board.provenance:
        out += ["<details open><summary>How this report was made</summary>", '<dl class="prov">']
        out += [f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in _provenance_items(board.provenance)]
        out += ["</dl></details>"]
    out.append("<h2>Leaderboard</h2>")
    if board.measures:
        out.append(_html_table(LEADERBOARD_HEADER, _leaderboard_rows(board),
                               lambda row: {verdict_col: "v-" + row[verdict_col].replace("/", "")}))
    else:
        out.append(f"<p>{_h('No measures were scored.' if board.evaluated else NOT_EVALUATED_LINE)}</p>")
    ids = plots.environment_ids(board.runs)
    if len(ids) > 1:
        out += ["<details open><summary>Environments (E1, E2, ... in the table and the figures)</summary>", '<dl class="prov">']
        out += [f"<dt>{_h(i)}</dt><dd>{_h(env)}</dd>" for env, i in ids.items()]
        out += ["</dl></details>"]
    env_rows = _environment_rows(board)
    if env_rows:
        out += ["<h2>Environments and their effective sample sizes</h2>", f"<p>{_h(_environments_line(board))}</p>",
                "<details><summary>Every environment</summary>", _html_table(ENVIRONMENTS_HEADER, env_rows), "</details>"]
    cmi_rows = _cmi_rows(board)
    if cmi_rows:
        out += ["<h2>Conditional mutual information (Jiang et al. 2020)</h2>", f'<p class="note">{_h(CMI_NOTE)}</p>',
                _html_table(CMI_HEADER_START + tuple(f"I | {k}" for k in _cmi_sets(board)), cmi_rows)]
    main = {f: v for f, v in figures.items() if not f.startswith("measure-")}
    if "heatmap-sign-error.png" in main:
        caption, png = main.pop("heatmap-sign-error.png")
        out += ["<h2>Where each measure breaks</h2>", _img(png, caption)]
    if main:
        out += ["<h2>Training (Zhang et al. Figure 1)</h2>", '<div class="plots">']
        out += [_img(png, caption) for caption, png in main.values()]
        out.append("</div>")
    table1 = _table1_cells_of(board)
    if table1:
        out += ["<h2>Table 1: accuracy per setting and randomization</h2>", _html_table(TABLE1_HEADER, table1),
                '<p class="note">Mean ± sample standard deviation over seeds. Best test accuracy is the highest test accuracy '
                "along training (the paper's early stopping), from each run's curve.</p>"]
    small = [(caption, png) for f, (caption, png) in figures.items() if f.startswith("measure-")]
    if small:
        out += ["<h2>Measures on natural vs randomized runs</h2>", '<div class="grid">']
        out += [_img(png, caption) for caption, png in small]
        out.append("</div>")
    out += [f'<p class="note">{_h(n)}</p>' for n in notes]
    out.append("<h2>Verdict thresholds</h2>")
    if board.thresholds:
        out.append("<ul>" + "".join(f"<li><code>{_h(k)}</code>: {_h(_fmt_threshold(v))}</li>"
                                    for k, v in board.thresholds.items()) + "</ul>")
    else:
        out.append("<p>No thresholds recorded.</p>")
    out += ["<h2>How to read this</h2>", f"<p>{_h(HOW_TO_READ)}</p>", "<h2>Runs</h2>",
            _html_table(RUNS_HEADER, _runs_rows(board)) if board.runs else "<p>No runs.</p>"]
    errors = _error_rows(board)
    if errors:
        out += ["<h2>Errors</h2>", _html_table(ERRORS_HEADER, errors)]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- CSV -------------------------------------------------------------------------------------------

def run_columns(runs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The union of the runs' keys: RUN_KEYS first, in their order, then the rest sorted."""
    keys = {str(k) for r in runs for k in r}
    return list(RUN_KEYS) + sorted(keys - set(RUN_KEYS))


def runs_csv(board: Leaderboard) -> str:
    return _csv_text(run_columns(board.runs), board.runs)


def measures_csv(board: Leaderboard) -> str:
    """One row per value, with the run's identity and whole environment; training settings as
    ``train.<setting>`` columns where the run rows carry them."""
    by_key = {r.get("key"): r for r in board.runs}
    train_cols = sorted({str(k) for r in board.runs for k in r if str(k).startswith("train.")})
    columns = list(MEASURE_VALUE_COLUMNS) + ["not_applicable", "uncertainty"] + list(RUN_COLUMNS) + list(ENVIRONMENT_COLUMNS) + train_cols
    rows = []
    for v in board.values:
        run = by_key.get(v.run_key, {})
        row = {k: getattr(v, k) for k in MEASURE_VALUE_COLUMNS}
        row["not_applicable"] = v.not_applicable  # error then holds the reason, not a failure
        row["uncertainty"] = (v.extra or {}).get("uncertainty")
        row |= {k: run.get(k) for k in RUN_COLUMNS + tuple(train_cols)}
        row |= {"environment": plots.environment_of(run) if run else None,
                "dataset_args": run.get("dataset_args"), "model_args": run.get("model_args")}
        rows.append(row)
    return _csv_text(columns, rows)


# -- the report folder -----------------------------------------------------------------------------

def _replace_figures(out_dir: Path, figures: Mapping[str, tuple[str, bytes]]) -> list[Path]:
    """Write the figures into a fresh folder and swap it for ``figures/``, so no stale figure of
    an earlier report (a measure since dropped) lingers."""
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{FIGURES_DIR}."))
    try:
        for name, (_, png) in figures.items():
            (staging / name).write_bytes(png)
        os.chmod(staging, 0o777 & ~_umask())
        for f in staging.iterdir():
            os.chmod(f, 0o666 & ~_umask())
        target = out_dir / FIGURES_DIR
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{FIGURES_DIR}.old."))
            os.replace(target, old / FIGURES_DIR)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [target / name for name in figures]


def write_report(board: Leaderboard, out_dir: Path, command: Sequence[str] | None = None) -> list[Path]:
    """Write the report files and ``figures/`` into ``out_dir`` (created); return their paths.

    ``command`` is the command line the report states it was made by (default ``sys.argv``);
    a board that already carries its provenance keeps it. Everything is rendered in memory
    first, then each file is written atomically, so a failure while rendering leaves any earlier
    report in the folder untouched.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not board.provenance:
        board = dataclasses.replace(board, provenance=provenance(board, command))
    figures, notes = render_figures(board)
    data = board.to_json()
    carried_table1 = board.carried.get("table1") if not any(board.curves.values()) else None
    data["table1"] = carried_table1 if carried_table1 else _table1_json(table1_rows(board))
    data["figures"] = [f"{FIGURES_DIR}/{name}" for name in figures]
    contents = {
        "leaderboard.json": json.dumps(json_safe(data), indent=1, allow_nan=False, ensure_ascii=False) + "\n",
        "leaderboard.md": render_markdown(board, figures),
        "leaderboard.html": render_html(board, figures, notes),
        "runs.csv": runs_csv(board),
        "measures.csv": measures_csv(board),
    }
    paths = [_atomic_write(out_dir / name, contents[name]) for name in REPORT_FILES]
    return paths + _replace_figures(out_dir, figures)


# -- terminal --------------------------------------------------------------------------------------

def leaderboard_table(board: Leaderboard) -> Table:
    """The leaderboard as a compact rich table for the terminal."""
    if board.controls_ok:
        caption = Text("Controls: OK", style="green")
    else:
        caption = Text(_controls_line(board), style="bold red" if board.evaluated else "yellow")
    table = Table(title=Text(f"gentest leaderboard: {board.suite}", style="bold"), caption=caption, caption_justify="left")
    for name, justify in (("#", "right"), ("measure", "left"), ("family", "left"), ("verdict", "left"),
                          ("sign-error", "right"), ("worst env", "left"), ("CMI K", "right"), ("AUROC", "right"),
                          ("τ-b", "right"), ("errors", "right")):
        table.add_column(name, justify=justify, no_wrap=name in ("#", "measure", "verdict", "sign-error"))
    for i, m in enumerate(board.measures, 1):
        style = VERDICT_STYLES.get(m.verdict, "")
        table.add_row(
            Text(str(i)), Text(m.name), Text(m.family), Text(m.verdict, style=style),
            Text(fmt_ci(m.sign_error, m.sign_error_ci)), Text(fmt_worst(m)), Text(fmt(m.cmi, 3)), Text(fmt(m.auroc)),
            Text(fmt(m.kendall_tau)), Text(str(m.errors), style="red" if m.errors else ""),
        )
    return table

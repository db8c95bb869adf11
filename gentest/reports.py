"""Reports: one output folder per evaluation, and the leaderboard as a rich table.

``write_report`` writes five files into a folder:

* ``leaderboard.json``: ``Leaderboard.to_json()``, the stable machine interface (NaN and
  infinities become ``null``);
* ``leaderboard.md``: the leaderboard, the verdict thresholds, how to read it, the runs and
  the errors, as GitHub-renderable Markdown;
* ``leaderboard.html``: the same content, self-contained, with the plots embedded as base64
  PNGs (learning curves, the label-corruption sweep where there is one, and each measure's
  values on natural vs randomized runs);
* ``runs.csv``: one row per run; ``measures.csv``: one row per measure value, joined with the
  run's dataset, model, randomization, p and seed.

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, so a crash never leaves half a report.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import numbers
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from gentest import plots
from gentest.leaderboard import RUN_KEYS, Leaderboard, MeasureScore

__all__ = [
    "write_report", "leaderboard_table", "json_safe", "fmt", "fmt_ci", "fmt_pct", "fmt_worst",
    "REPORT_FILES", "RUN_COLUMNS", "MEASURE_VALUE_COLUMNS",
]

DASH = "—"
REPORT_FILES = ("leaderboard.json", "leaderboard.md", "leaderboard.html", "runs.csv", "measures.csv")
MEASURE_VALUE_COLUMNS = ("run_key", "measure", "version", "value", "error", "seconds")
RUN_COLUMNS = ("dataset", "model", "randomization", "p", "seed")  # joined onto measures.csv
VERDICT_STYLES = {"separates": "green", "inverts": "yellow", "fails": "dim", "error": "red", "n/a": "blue"}

HOW_TO_READ = (
    "Each natural run is paired with randomized twins trained with identical settings; only the "
    "labels or the pixels differ, so the twin that memorized noise has the larger generalization "
    "gap. A measure's sign-error is its mean over these pairs of 0 (the measure orders the pair "
    "like the gap), 1 (it inverts the pair) or 0.5 (a tie): 0 = the measure orders every "
    "natural/randomized pair like the generalization gap, 1 = it inverts every pair, 0.5 = ties "
    "or chance. The worst environment is the architecture × randomization × training setting "
    "where the measure does worst. AUROC scores the oriented measure as a classifier of "
    "randomized (positive) vs natural runs; Kendall's τ-b correlates it with the gap where the "
    "suite sweeps label corruption p. Intervals are 95 % bootstrap intervals over seeds. A "
    "measure that cannot separate a network that learned from one that memorized noise cannot "
    "explain generalization."
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}
.ok{color:#1a7f37;font-weight:bold}.broken{color:#b00;font-weight:bold}
.v-separates{color:#1a7f37;font-weight:bold}.v-inverts{color:#9a6700;font-weight:bold}
.v-fails{color:#777}.v-error{color:#b00;font-weight:bold}
code{font-size:.9em}img{max-width:100%;display:block;margin:.5em 0}
.plots{display:flex;flex-wrap:wrap;gap:1em}.note{color:#666}
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


# -- the pieces shared by Markdown and HTML --------------------------------------------------------

LEADERBOARD_HEADER = (
    "rank", "measure", "family", "orientation", "verdict", "sign-error [95% CI]", "worst env sign-error",
    "AUROC [95% CI]", "Kendall τ-b", "pairs", "errors", "reason",
)
RUNS_HEADER = ("run", "dataset", "model", "randomization", "p", "seed", "train acc %", "test acc %", "gap %", "steps to fit")
ERRORS_HEADER = ("measure", "run", "error")
NUMERIC = {"rank", "sign-error [95% CI]", "worst env sign-error", "AUROC [95% CI]", "Kendall τ-b", "pairs", "errors",
           "p", "seed", "train acc %", "test acc %", "gap %", "steps to fit"}


def _leaderboard_rows(board: Leaderboard) -> list[list[str]]:
    return [
        [str(i), m.name, m.family, m.orientation, m.verdict, fmt_ci(m.sign_error, m.sign_error_ci),
         fmt_worst(m), fmt_ci(m.auroc, m.auroc_ci), fmt(m.kendall_tau), str(m.n_pairs), str(m.errors), m.reason or ""]
        for i, m in enumerate(board.measures, 1)
    ]


def _runs_rows(board: Leaderboard) -> list[list[str]]:
    return [
        [str(r.get("key", "")), str(r.get("dataset", "")), str(r.get("model", "")), str(r.get("randomization", "")),
         _fmt_p(r), fmt(r.get("seed")), fmt_pct(r.get("train_acc")), fmt_pct(r.get("test_acc")), fmt_pct(r.get("gap")),
         fmt(r.get("steps_to_fit"), 0)]
        for r in board.runs
    ]


def _error_rows(board: Leaderboard) -> list[list[str]]:
    # A measure that does not apply is not an error: its reason is in the leaderboard row.
    return [[v.measure, v.run_key, str(v.error)] for v in board.values if v.error and not v.not_applicable]


def _controls_line(board: Leaderboard, md: bool) -> str:
    if board.controls_ok:
        return "Controls: OK"
    msg = board.controls_message or "the natural/randomized controls did not score as they must"
    if md:
        return f"**Controls failed: {_md_cell(msg)}** — the suite is broken, not the measures"
    return f"Controls failed: {msg} — the suite is broken, not the measures"


# -- Markdown --------------------------------------------------------------------------------------

def _md_cell(text: Any) -> str:
    """One table cell: no raw HTML, no pipes, one line."""
    s = html.escape(str(text), quote=False).replace("|", "\\|")
    return " ".join(s.split())


def _md_table(header: Iterable[str], rows: list[list[str]]) -> list[str]:
    header = list(header)
    align = ["---:" if h in NUMERIC else "---" for h in header]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(board: Leaderboard) -> str:
    """The report as GitHub-renderable Markdown."""
    out = [
        f"# gentest leaderboard: {_md_cell(board.suite)}",
        "",
        f"gentest {_md_cell(board.gentest_version)} · {len(board.runs)} runs · {len(board.measures)} measures",
        "",
        _controls_line(board, md=True),
        "",
        "## Leaderboard",
        "",
    ]
    out += _md_table(LEADERBOARD_HEADER, _leaderboard_rows(board)) if board.measures else ["No measures were scored."]
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
    parts = ["<table>", "<thead><tr>" + "".join(f"<th>{_h(c)}</th>" for c in header) + "</tr></thead>", "<tbody>"]
    for row in rows:
        extra = row_class(row) if row_class else {}
        cells = []
        for i, (name, c) in enumerate(zip(header, row)):
            classes = " ".join(filter(None, ["num" if name in NUMERIC else "", extra.get(i, "")]))
            cells.append(f"<td class=\"{classes}\">{_h(c)}</td>" if classes else f"<td>{_h(c)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_h(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _plot(alt: str, draw: Callable[[], bytes | None]) -> str | None:
    """An embedded plot; a plot that fails to draw becomes a note, not a lost report."""
    try:
        png = draw()
    except Exception as exc:  # noqa: BLE001 - the tables are worth more than one plot
        warnings.warn(f"gentest report: plot '{alt}' failed: {exc!r}", RuntimeWarning, stacklevel=2)
        return f'<p class="note">Plot {_h(alt)} could not be drawn: {_h(repr(exc))}</p>'
    return _img(png, alt) if png is not None else None


def _measure_names(board: Leaderboard) -> list[str]:
    names = [m.name for m in board.measures]
    names += sorted({v.measure for v in board.values} - set(names))
    return names


def render_html(board: Leaderboard) -> str:
    """The report as one self-contained HTML page: inline CSS, plots as data: URIs, no scripts."""
    verdict_col = LEADERBOARD_HEADER.index("verdict")
    orientation = {m.name: m.orientation for m in board.measures}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>gentest leaderboard: {_h(board.suite)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>gentest leaderboard: {_h(board.suite)}</h1>",
        f"<p>gentest {_h(board.gentest_version)} · {len(board.runs)} runs · {len(board.measures)} measures</p>",
        f'<p class="{"ok" if board.controls_ok else "broken"}">{_h(_controls_line(board, md=False))}</p>',
        "<h2>Leaderboard</h2>",
        _html_table(LEADERBOARD_HEADER, _leaderboard_rows(board),
                    lambda row: {verdict_col: "v-" + row[verdict_col].replace("/", "")}) if board.measures else "<p>No measures were scored.</p>",
        "<h2>Verdict thresholds</h2>",
    ]
    if board.thresholds:
        out.append("<ul>" + "".join(f"<li><code>{_h(k)}</code>: {_h(_fmt_threshold(v))}</li>"
                                    for k, v in board.thresholds.items()) + "</ul>")
    else:
        out.append("<p>No thresholds recorded.</p>")
    out += ["<h2>How to read this</h2>", f"<p>{_h(HOW_TO_READ)}</p>", "<h2>Training</h2>", '<div class="plots">']
    out.append(_plot("learning curves", lambda: plots.learning_curves(board.runs, board.curves)) or "")
    sweep = _plot("label-corruption sweep", lambda: plots.corruption_sweep(board.runs))
    if sweep:
        out.append(sweep)
    out += ["</div>", "<h2>Measures on natural vs randomized runs</h2>", '<div class="plots">']
    for name in _measure_names(board):
        mine = [v for v in board.values if v.measure == name]
        if not any(v.error is None and _is_num(v.value) and math.isfinite(v.value) for v in mine):
            out.append(f'<p class="note">{_h(name)}: no values to plot.</p>')
            continue
        img = _plot(f"{name} values", lambda n=name, vs=mine: plots.measure_values(n, board.runs, vs, orientation.get(n)))
        out.append(img or "")
    out += ["</div>", "<h2>Runs</h2>",
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
    by_key = {r.get("key"): r for r in board.runs}
    rows = []
    for v in board.values:
        run = by_key.get(v.run_key, {})
        rows.append({**{k: getattr(v, k) for k in MEASURE_VALUE_COLUMNS}, **{k: run.get(k) for k in RUN_COLUMNS}})
    return _csv_text(list(MEASURE_VALUE_COLUMNS + RUN_COLUMNS), rows)


# -- the report folder -----------------------------------------------------------------------------

def write_report(board: Leaderboard, out_dir: Path) -> list[Path]:
    """Write the five report files into ``out_dir`` (created) and return their paths.

    Everything is rendered in memory first, then each file is written atomically, so a failure
    while rendering leaves any earlier report in the folder untouched.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {
        "leaderboard.json": json.dumps(json_safe(board.to_json()), indent=1, allow_nan=False, ensure_ascii=False) + "\n",
        "leaderboard.md": render_markdown(board),
        "leaderboard.html": render_html(board),
        "runs.csv": runs_csv(board),
        "measures.csv": measures_csv(board),
    }
    return [_atomic_write(out_dir / name, contents[name]) for name in REPORT_FILES]


# -- terminal --------------------------------------------------------------------------------------

def leaderboard_table(board: Leaderboard) -> Table:
    """The leaderboard as a compact rich table for the terminal."""
    if board.controls_ok:
        caption = Text("Controls: OK", style="green")
    else:
        caption = Text(_controls_line(board, md=False), style="bold red")
    table = Table(title=Text(f"gentest leaderboard: {board.suite}", style="bold"), caption=caption, caption_justify="left")
    for name, justify in (("#", "right"), ("measure", "left"), ("family", "left"), ("verdict", "left"),
                          ("sign-error", "right"), ("worst env", "left"), ("AUROC", "right"), ("τ-b", "right"),
                          ("errors", "right")):
        table.add_column(name, justify=justify, no_wrap=name in ("#", "measure", "verdict", "sign-error"))
    for i, m in enumerate(board.measures, 1):
        style = VERDICT_STYLES.get(m.verdict, "")
        table.add_row(
            Text(str(i)), Text(m.name), Text(m.family), Text(m.verdict, style=style),
            Text(fmt_ci(m.sign_error, m.sign_error_ci)), Text(fmt_worst(m)), Text(fmt(m.auroc)),
            Text(fmt(m.kendall_tau)), Text(str(m.errors), style="red" if m.errors else ""),
        )
    return table

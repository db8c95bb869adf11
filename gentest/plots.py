"""Plots for the reports: each function draws one small figure and returns it as PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` on the Agg canvas, never through pyplot,
which keeps a reference to every figure it opens (a leak in a long-lived process). The plots
follow Zhang et al. (ICLR 2017), Figure 1: (a) learning curves per randomization, (b) steps to
fit against label corruption p, (c) test error against p; and, for each measure, its values on
natural and randomized runs side by side.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from io import BytesIO
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["learning_curves", "corruption_sweep", "measure_values", "has_sweep", "kind_label", "kind_order", "SWEEP_KINDS"]

DPI = 100
SIZE = (6.0, 3.5)  # inches; at DPI 100 a plot is 600 x 350 pixels, a few tens of kB as PNG
WIDE = (8.0, 3.2)  # two panels side by side
SWEEP_KINDS = frozenset({"none", "labels"})  # the runs on a label-corruption axis (natural is p = 0)
NATURAL_COLOR = "black"
PALETTE = ("tab:red", "tab:orange", "tab:purple", "tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:blue", "tab:gray")


# -- grouping runs by randomization ---------------------------------------------------------------

def kind_label(run: Mapping[str, Any]) -> str:
    """The legend name of a run's randomization: ``natural``, ``labels p=0.5``, ``random-pixels``."""
    kind = run.get("randomization") or "none"
    if kind == "none":
        return "natural"
    if kind == "labels":
        p = run.get("p")
        return f"labels p={p:g}" if _finite(p) else "labels"
    return str(kind)


def _kind_sort_key(run: Mapping[str, Any]) -> tuple:
    kind = run.get("randomization") or "none"
    if kind == "none":
        return (0, 0.0, "")
    if kind == "labels":
        p = run.get("p")
        return (1, float(p) if _finite(p) else math.inf, "")
    return (2, 0.0, str(kind))


def kind_order(runs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Distinct kind labels, natural first, then labels by increasing p, then other kinds by name."""
    first: dict[str, tuple] = {}
    for run in runs:
        first.setdefault(kind_label(run), _kind_sort_key(run))
    return sorted(first, key=lambda label: first[label])


def _colors(labels: Sequence[str]) -> dict[str, str]:
    out, i = {}, 0
    for label in labels:
        if label == "natural":
            out[label] = NATURAL_COLOR
        else:
            out[label] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


# -- helpers --------------------------------------------------------------------------------------

def _finite(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _figure(size: tuple[float, float], ncols: int = 1) -> tuple[Figure, list]:
    # Fixed margins rather than constrained layout: the layout solver doubled the drawing time
    # and these plots are simple enough to lay out by hand.
    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    left = 0.75 / size[0]  # room for tick labels and the y label, in inches
    fig.subplots_adjust(left=left, right=0.98, bottom=0.16, top=0.84, wspace=0.3)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _png(fig: Figure) -> bytes:
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _p_of(run: Mapping[str, Any]) -> float:
    """Label-corruption level of a run on the sweep axis: natural runs sit at p = 0."""
    if (run.get("randomization") or "none") == "none":
        return 0.0
    p = run.get("p")
    return float(p) if _finite(p) else math.nan


def _sweep_runs(runs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in runs if (r.get("randomization") or "none") in SWEEP_KINDS and _finite(_p_of(r))]


def has_sweep(runs: Iterable[Mapping[str, Any]]) -> bool:
    """True when the runs put at least three distinct label-corruption levels p on the axis."""
    return len({_p_of(r) for r in _sweep_runs(runs)}) >= 3


# -- Figure 1a: learning curves ---------------------------------------------------------------------

def learning_curves(runs: Sequence[Mapping[str, Any]], curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes:
    """Train accuracy (left) and train loss (right) against SGD steps, one line per run.

    Lines are coloured by randomization kind, with one legend entry per kind (Zhang et al.,
    Figure 1a). Runs without a curve are left out; rows missing a value are skipped.
    """
    fig, (acc_ax, loss_ax) = _figure(WIDE, ncols=2)
    drawn = [r for r in runs if curves.get(r.get("key"))]
    labels = kind_order(drawn)
    colors = _colors(labels)
    seen: set[str] = set()
    for run in sorted(drawn, key=_kind_sort_key):
        label = kind_label(run)
        rows = curves[run["key"]]
        legend = label if label not in seen else "_nolegend_"
        seen.add(label)
        for ax, metric in ((acc_ax, "train_acc"), (loss_ax, "train_loss")):
            pts = [(row.get("steps"), row.get(metric)) for row in rows]
            pts = [(s, v) for s, v in pts if _finite(s) and _finite(v)]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, color=colors[label], lw=1.2, alpha=0.8, label=legend)
    if not drawn:
        _empty(acc_ax, "no learning curves recorded")
        _empty(loss_ax, "")
    else:
        acc_ax.set_ylabel("train accuracy")
        acc_ax.set_ylim(-0.02, 1.02)
        loss_ax.set_ylabel("train loss")
        for ax in (acc_ax, loss_ax):
            ax.set_xlabel("SGD steps")
            ax.grid(alpha=0.3)
        acc_ax.legend(fontsize="x-small", loc="lower right", title="randomization", title_fontsize="x-small")
    fig.suptitle("Learning curves (Zhang et al. Fig. 1a)", fontsize="medium")
    return _png(fig)


# -- Figures 1b and 1c: the label-corruption sweep -------------------------------------------------

def corruption_sweep(runs: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Steps to fit (left) and test error (right) against label corruption p, or None without a sweep.

    A sweep is at least three distinct p among natural (p = 0) and random-label runs. Each seed
    is a point, the mean over seeds a line; one line per dataset/model when the runs hold several.
    Runs that never fit their training set (steps_to_fit None) are left out of the left panel.
    """
    if not has_sweep(runs):
        return None
    sweep = _sweep_runs(runs)
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for run in sweep:
        groups[f"{run.get('dataset')}/{run.get('model')}"].append(run)
    fig, (fit_ax, err_ax) = _figure(WIDE, ncols=2)
    unfit = 0
    for i, (name, members) in enumerate(sorted(groups.items())):
        color = PALETTE[i % len(PALETTE)] if len(groups) > 1 else "tab:blue"
        label = name if len(groups) > 1 else "mean over seeds"
        fits = [(_p_of(r), r.get("steps_to_fit")) for r in members]
        unfit += sum(1 for _, s in fits if not _finite(s))
        fits = [(p, float(s)) for p, s in fits if _finite(s)]
        errs = [(_p_of(r), 1.0 - r["test_acc"]) for r in members if _finite(r.get("test_acc"))]
        for ax, pts in ((fit_ax, fits), (err_ax, errs)):
            if not pts:
                continue
            ax.scatter([p for p, _ in pts], [y for _, y in pts], color=color, alpha=0.5, s=18, lw=0)
            by_p: dict[float, list[float]] = defaultdict(list)
            for p, y in pts:
                by_p[p].append(y)
            ps = sorted(by_p)
            ax.plot(ps, [sum(by_p[p]) / len(by_p[p]) for p in ps], "-o", color=color, ms=4, lw=1.4, label=label)
    fit_ax.set_ylabel("steps to fit")
    fit_ax.set_title("time to fit (Fig. 1b)" + (f"; {unfit} unfit run(s) left out" if unfit else ""), fontsize="small")
    err_ax.set_ylabel("test error")
    err_ax.set_title("test error (Fig. 1c)", fontsize="small")
    for ax in (fit_ax, err_ax):
        ax.set_xlabel("label corruption p")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    if not fit_ax.lines:
        _empty(fit_ax, "no run fitted its training set")
    return _png(fig)


# -- one measure on natural vs randomized runs -----------------------------------------------------

def measure_values(
    measure_name: str,
    runs: Sequence[Mapping[str, Any]],
    values: Iterable[Any],
    orientation: str | None = None,
) -> bytes:
    """A box and strip plot of one measure's values per randomization kind, natural first.

    ``values`` are MeasureValue objects (or dicts with run_key, measure, value); entries for
    other measures, errors and non-finite values are left out, and their count is said in the
    title. Each point is one run. The y axis goes logarithmic when the positive values span
    more than three decades.
    """
    by_key = {r.get("key"): r for r in runs}
    groups: dict[str, list[float]] = defaultdict(list)
    group_runs: list[Mapping[str, Any]] = []
    missing = 0
    for v in values:
        get = v.get if isinstance(v, Mapping) else lambda k, _v=v: getattr(_v, k, None)
        if get("measure") not in (None, measure_name):
            continue
        run = by_key.get(get("run_key"))
        value = get("value")
        if run is None or get("error") or not _finite(value):
            missing += 1
            continue
        groups[kind_label(run)].append(float(value))
        group_runs.append(run)
    labels = kind_order(group_runs)
    colors = _colors(labels)
    fig, (ax,) = _figure(SIZE)
    title = measure_name + (f" ({orientation})" if orientation else "")
    if missing:
        title += f" — {missing} missing"
    ax.set_title(title, fontsize="medium")
    if not labels:
        _empty(ax, "no values")
        return _png(fig)
    data = [groups[label] for label in labels]
    positions = list(range(1, len(labels) + 1))
    ax.boxplot(data, positions=positions, widths=0.5, showfliers=False,
               medianprops={"color": "0.3"}, boxprops={"color": "0.6"}, whiskerprops={"color": "0.6"}, capprops={"color": "0.6"})
    for pos, label, ys in zip(positions, labels, data):
        n = len(ys)
        # Deterministic jitter: evenly spread across the box width, so the PNG is reproducible.
        xs = [pos + (0.0 if n == 1 else -0.15 + 0.3 * i / (n - 1)) for i in range(n)]
        ax.scatter(xs, ys, color=colors[label], s=22, alpha=0.8, zorder=3, lw=0)
    ax.set_xticks(positions, labels, fontsize="small", rotation=15 if len(labels) > 3 else 0)
    positive = [y for ys in data for y in ys if y > 0]
    if positive and len(positive) == sum(map(len, data)) and max(positive) / min(positive) > 1e3:
        ax.set_yscale("log")
    ax.set_ylabel(measure_name)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)

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

from gentest.scoring import robust_key  # the board's order: one definition, in scoring

__all__ = [
    "learning_curves", "corruption_sweep", "measure_values", "has_sweep", "kind_label", "kind_order", "SWEEP_KINDS",
    "environment_of", "environment_ids", "sign_error_heatmap", "env_sign_error_distribution", "env_sort_key", "loss_curves_by_environment", "time_to_fit_relative", "relative_time_to_fit", "test_error_vs_p",
]

DPI = 100
SIZE = (6.0, 3.5)  # inches; at DPI 100 a plot is 600 x 350 pixels, a few tens of kB as PNG
WIDE = (8.0, 3.2)  # two panels side by side
SMALL = (3.3, 2.3)  # one small multiple (measure values): a grid of them in the HTML
SMALL_DPI = 72  # small multiples at 238 x 166 pixels: ~10 kB each, so 60 measures stay well under 1 MB
PANEL = (3.2, 2.6)  # one environment's panel of Figure 1a
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


PALETTE_COLORS = 128  # PNGs are quantized to this many colours: 3-4x smaller, no visible change


def _png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as a palette PNG: a report holds dozens of plots and must stay small (a
    ``standard`` report under ~3 MB), and antialiased RGBA plots compress poorly."""
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    from PIL import Image  # a dependency of matplotlib

    image = Image.open(BytesIO(buf.getvalue())).convert("RGB").quantize(colors=PALETTE_COLORS, method=Image.Quantize.MEDIANCUT)
    out = BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def environment_of(run: Mapping[str, Any]) -> str:
    """The run's whole environment (architecture with its options × training settings), as the
    leaderboard's run rows carry it; ``dataset/model`` for rows without one."""
    env = run.get("environment")
    return str(env) if env else f"{run.get('dataset')}/{run.get('model')}"


def environment_ids(runs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Short names E1, E2, ... for the environments of ``runs``, in sorted order: the figures
    label panels, lines and heatmap columns with them, and the report spells them out."""
    return {env: f"E{i + 1}" for i, env in enumerate(sorted({environment_of(r) for r in runs}))}


def _grid(n: int, panel: tuple[float, float], ncols: int = 3, dpi: int = DPI) -> tuple[Figure, list]:
    """A figure of ``n`` panels (small multiples), ``ncols`` to a row; unused panels hidden."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    size = (panel[0] * ncols, panel[1] * nrows + 0.5)
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.7 / size[0], right=0.98, bottom=0.55 / size[1], top=1 - 0.55 / size[1],
                        wspace=0.3, hspace=0.55)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _wrap(text: str, width: int = 42) -> str:
    """Break a long environment name at spaces so a panel title fits its panel."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


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
    is a point, the mean over seeds a line; one line per environment when the runs hold several.
    Runs that never fit their training set (steps_to_fit None) are left out of the left panel.
    """
    if not has_sweep(runs):
        return None
    sweep = _sweep_runs(runs)
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for run in sweep:
        groups[environment_of(run)].append(run)
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
    small: bool = False,
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
    fig, (ax,) = _figure(SMALL if small else SIZE)
    dpi = SMALL_DPI if small else DPI
    if small:
        fig.subplots_adjust(left=0.2, bottom=0.3, top=0.86)
    title = measure_name + (f" ({orientation})" if orientation else "")
    if missing:
        title += f" — {missing} missing"
    ax.set_title(title, fontsize="small" if small else "medium")
    if not labels:
        _empty(ax, "no values")
        return _png(fig, dpi)
    data = [groups[label] for label in labels]
    positions = list(range(1, len(labels) + 1))
    ax.boxplot(data, positions=positions, widths=0.5, showfliers=False,
               medianprops={"color": "0.3"}, boxprops={"color": "0.6"}, whiskerprops={"color": "0.6"}, capprops={"color": "0.6"})
    for pos, label, ys in zip(positions, labels, data):
        n = len(ys)
        # Deterministic jitter: evenly spread across the box width, so the PNG is reproducible.
        xs = [pos + (0.0 if n == 1 else -0.15 + 0.3 * i / (n - 1)) for i in range(n)]
        ax.scatter(xs, ys, color=colors[label], s=22, alpha=0.8, zorder=3, lw=0)
    ax.set_xticks(positions, labels, fontsize="x-small" if small else "small",
                  rotation=(30 if small else 15) if len(labels) > 3 else 0)
    positive = [y for ys in data for y in ys if y > 0]
    if positive and len(positive) == sum(map(len, data)) and max(positive) / min(positive) > 1e3:
        ax.set_yscale("log")
    if small:
        ax.tick_params(labelsize=6)
    else:
        ax.set_ylabel(measure_name)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig, dpi)


# -- the headline: sign-error per measure and environment -------------------------------------------

def env_sort_key(env: str) -> tuple:
    """Columns grouped by setting, then kinds in the order of the legends (natural, labels by p, ...)."""
    setting, _, kind = env.rpartition("/")
    if kind.startswith("labels(p="):
        try:
            return (setting, 1, float(kind[len("labels(p="):-1]), "")
        except ValueError:
            pass
    return (setting, 2, 0.0, kind)


def sign_error_heatmap(scores: Sequence[Any], env_ids: Mapping[str, str] | None = None) -> bytes | None:
    """Sign-error of every measure (rows) in every environment (columns), or None without any.

    ``scores`` are MeasureScore objects. Rows are ordered by the robust score of Dziugaite et
    al. (worst-environment sign-error, then mean sign-error), best at the top. Columns are
    grouped by setting (architecture × training, labelled E1, E2, ... above the map and spelled
    out below it), then by randomization kind. 0 (green) orders every pair of that environment
    like the gap, 1 (red) inverts every pair, ½ (yellow) ties or chance; a measure with no scored
    pair in an environment leaves the cell grey. Cells are weighted sign-errors (Dziugaite et
    al.'s pair weights); an environment whose effective sample size is under the board's
    threshold is marked ``*`` and its label greyed: shown, but left out of the worst case.
    """
    rows = sorted((s for s in scores if getattr(s, "env_sign_errors", None)), key=robust_key)
    if not rows:
        return None
    import numpy as np

    envs = sorted({e for s in rows for e in s.env_sign_errors}, key=env_sort_key)
    settings = list(dict.fromkeys(e.rpartition("/")[0] for e in envs))
    data = np.full((len(rows), len(envs)), np.nan)
    col = {e: j for j, e in enumerate(envs)}
    for i, s in enumerate(rows):
        for e, v in s.env_sign_errors.items():
            if _finite(v):
                data[i, col[e]] = v
    kinds = [e.rpartition("/")[2] for e in envs]
    kind_in = max(len(k) for k in kinds) * 0.065 + 0.2
    name_in = min(48, max(len(s.name) for s in rows)) * 0.065 + 0.2
    legend_in = 0.16 * len(settings) + 0.2 if len(settings) > 1 else 0.35
    cell_w, cell_h = 0.2, 0.17
    map_w, map_h = cell_w * len(envs), cell_h * len(rows)
    width = max(name_in + map_w + 0.9, 6.0)
    height = 0.6 + map_h + kind_in + legend_in
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((name_in / width, (kind_in + legend_in) / height, map_w / width, map_h / height))
    bar_h = min(map_h, 2.5)
    cax = fig.add_axes(((name_in + map_w + 0.15) / width, (kind_in + legend_in + map_h - bar_h) / height, 0.12 / width, bar_h / height))
    image = ax.imshow(np.ma.masked_invalid(data), cmap="RdYlGn_r", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_facecolor("0.85")
    thin = {e for s in rows for e in getattr(s, "envs_left_out", ())}
    ax.set_xticks(range(len(envs)), [k + ("*" if e in thin else "") for k, e in zip(kinds, envs)], rotation=90, fontsize=6)
    for label, e in zip(ax.get_xticklabels(), envs):
        if e in thin:
            label.set_color("0.5")
    ax.set_yticks(range(len(rows)), [s.name for s in rows], fontsize=6)
    if len(envs) * len(rows) <= 400:
        for i in range(len(rows)):
            for j in range(len(envs)):
                if np.isfinite(data[i, j]):
                    ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=5)
    if len(settings) > 1:
        top = ax.secondary_xaxis("top")
        centers, start = [], 0
        for k, setting in enumerate(settings):
            n = sum(1 for e in envs if e.rpartition("/")[0] == setting)
            centers.append(start + (n - 1) / 2)
            if k:
                ax.axvline(start - 0.5, color="white", lw=1.5)
            start += n
        ids = {setting: (env_ids or {}).get(setting) or f"E{k + 1}" for k, setting in enumerate(settings)}
        top.set_xticks(centers, [ids[setting] for setting in settings], fontsize=6)
        top.tick_params(length=0)
        legend = "\n".join(f"{ids[setting]}: {setting}" for setting in settings)
    else:
        legend = f"environment: {settings[0]}"
    if thin:
        legend += f"\n* effective sample under the threshold in {len(thin)} of {len(envs)} environments: " \
                  "shown, left out of the worst case"
    fig.text(name_in / width, (legend_in - 0.1) / height, legend, fontsize=6, va="top", ha="left", family="monospace")
    colorbar = fig.colorbar(image, cax=cax)
    colorbar.ax.tick_params(labelsize=6)
    colorbar.set_label("sign-error", fontsize=7)
    fig.text(0.5, 1 - 0.15 / height, "Sign-error per environment (rows: worst environment, then mean; best first)",
             fontsize=8, ha="center", va="top")
    return _png(fig)


def env_sign_error_distribution(scores: Sequence[Any]) -> bytes | None:
    """The distribution of each measure's per-environment sign-errors, as Dziugaite et al.
    (2020) summarize it in their CDF figures: one row per measure (the heatmap's order), a dot per
    environment (filled: kept in the worst case; hollow: effective sample under the threshold),
    and the mean, 90th percentile and maximum over the kept environments as ticks."""
    rows = sorted((s for s in scores if getattr(s, "env_sign_errors", None)), key=robust_key)
    if not rows:
        return None
    height = 0.8 + 0.17 * len(rows)
    name_in = min(48, max(len(s.name) for s in rows)) * 0.065 + 0.2
    width = max(name_in + 4.5, 6.0)
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((name_in / width, 0.45 / height, (width - name_in - 0.3) / width, (height - 0.8) / height))
    for i, s in enumerate(rows):
        thin = set(getattr(s, "envs_left_out", ()))
        kept = [v for e, v in s.env_sign_errors.items() if e not in thin and _finite(v)]
        left = [v for e, v in s.env_sign_errors.items() if e in thin and _finite(v)]
        ax.scatter(left, [i] * len(left), s=9, facecolors="none", edgecolors="0.6", linewidths=0.6)
        ax.scatter(kept, [i] * len(kept), s=9, color="tab:blue")
        q = getattr(s, "env_quantiles", None) or {}
        for key, marker, color in (("mean", "|", "black"), ("p90", "|", "tab:orange"), ("max", "|", "tab:red")):
            if _finite(q.get(key)):
                ax.scatter([q[key]], [i], marker=marker, s=60, color=color, linewidths=1.2)
    ax.set_yticks(range(len(rows)), [s.name for s in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("sign-error per environment", fontsize=7)
    ax.tick_params(axis="x", labelsize=6)
    ax.grid(axis="x", color="0.9")
    fig.text(0.5, 1 - 0.12 / height, "Per-environment sign-errors (filled: kept; hollow: thin; ticks: mean, "
             "p90, max over kept)", fontsize=8, ha="center", va="top")
    return _png(fig)


# -- Figure 1a, 1b, 1c as the paper draws them, one environment per panel or line ------------------

def _by_environment(runs: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[environment_of(run)].append(run)
    return dict(sorted(groups.items()))


def loss_curves_by_environment(runs: Sequence[Mapping[str, Any]], curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes:
    """Figure 1a: train loss against SGD steps, one line per run coloured by randomization, one
    panel per environment (small multiples; seeds of a kind share a colour)."""
    drawn = [r for r in runs if curves.get(r.get("key"))]
    groups = _by_environment(drawn)
    labels = kind_order(drawn)
    colors = _colors(labels)
    ids = environment_ids(runs)
    fig, axes = _grid(max(1, len(groups)), PANEL)
    fig.subplots_adjust(top=1 - 0.9 / fig.get_figheight())  # room for three-line panel titles
    if len(groups) > 3:
        fig.subplots_adjust(hspace=0.9)
    if not groups:
        _empty(axes[0], "no learning curves recorded")
        return _png(fig)
    for ax, (env, members) in zip(axes, groups.items()):
        seen: set[str] = set()
        for run in sorted(members, key=_kind_sort_key):
            label = kind_label(run)
            pts = [(row.get("steps"), row.get("train_loss")) for row in curves[run["key"]]]
            pts = [(s, v) for s, v in pts if _finite(s) and _finite(v)]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, color=colors[label], lw=1.0, alpha=0.8, label=label if label not in seen else "_nolegend_")
                seen.add(label)
        ax.set_title(_wrap(f"{ids[env]}: {env}" if len(groups) > 1 else env, 56), fontsize=6)
        ax.set_xlabel("SGD steps", fontsize=7)
        ax.set_ylabel("train loss", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, title="randomization", title_fontsize=6)
    fig.suptitle("Learning curves (Zhang et al. Fig. 1a)", fontsize=9)
    return _png(fig)


def _sweep_groups(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Environments that sweep label corruption on their own (≥ 3 distinct p), with their sweep runs."""
    return {env: members for env, members in _by_environment(_sweep_runs(runs)).items() if has_sweep(members)}


def _mean_line(ax, pts: list[tuple[float, float]], color: str, label: str) -> None:
    ax.scatter([p for p, _ in pts], [y for _, y in pts], color=color, alpha=0.45, s=14, lw=0)
    by_p: dict[float, list[float]] = defaultdict(list)
    for p, y in pts:
        by_p[p].append(y)
    ps = sorted(by_p)
    ax.plot(ps, [sum(by_p[p]) / len(by_p[p]) for p in ps], "-o", color=color, ms=3.5, lw=1.3, label=label)


def _sweep_figure(groups: Mapping[str, Any], title: str, ylabel: str):
    fig, (ax,) = _figure((6.4, 3.6))
    fig.subplots_adjust(right=0.86 if len(groups) > 1 else 0.98)
    ax.set_title(title, fontsize="small")
    ax.set_xlabel("label corruption p")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _line_label(env: str, ids: Mapping[str, str], n_groups: int) -> str:
    return ids[env] if n_groups > 1 else _wrap(env, 36)


def _legend(ax, n_groups: int) -> None:
    if ax.get_legend_handles_labels()[0]:
        if n_groups > 1:
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=1 + n_groups // 13)
        else:
            ax.legend(fontsize="x-small")


def relative_time_to_fit(runs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[tuple[float, float]]], int]:
    """Figure 1b's points: per environment that sweeps p, ``(p, steps_to_fit / steps_to_fit of
    the natural twin)`` for each sweep run (the natural run itself gives ``(0, 1)``); and how many
    runs were left out because they or their natural twin never fit."""
    out: dict[str, list[tuple[float, float]]] = {}
    left_out = 0
    for env, members in _sweep_groups(runs).items():
        natural = {_twin_id(r): r.get("steps_to_fit") for r in members if (r.get("randomization") or "none") == "none"}
        pts = []
        for r in members:
            base, steps = natural.get(_twin_id(r)), r.get("steps_to_fit")
            if _finite(base) and base > 0 and _finite(steps):
                pts.append((_p_of(r), float(steps) / float(base)))
            else:
                left_out += 1
        out[env] = pts
    return out, left_out


def time_to_fit_relative(runs: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Figure 1b as the paper draws it: steps to fit at corruption p divided by steps to fit of
    the natural twin (same environment and seed), against p; one line per environment (mean over
    seeds, a point per seed). None when no environment sweeps p. Runs that never fit (or whose
    natural twin never fit) are left out and counted in the title."""
    groups, left_out = relative_time_to_fit(runs)
    if not groups:
        return None
    ids = environment_ids(runs)
    fig, ax = _sweep_figure(groups, "", "time to fit relative to natural labels")
    for i, (env, pts) in enumerate(groups.items()):
        if pts:
            _mean_line(ax, pts, PALETTE[i % len(PALETTE)] if len(groups) > 1 else "tab:blue", _line_label(env, ids, len(groups)))
    ax.set_title("Time to fit (Fig. 1b)" + (f"; {left_out} run(s) without a fit left out" if left_out else ""), fontsize="small")
    if not ax.lines:
        _empty(ax, "no run fitted its training set")
    _legend(ax, len(groups))
    return _png(fig)


def test_error_vs_p(runs: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Figure 1c: test error (1 − test accuracy) against label corruption p, one line per
    environment (mean over seeds, a point per seed); None when no environment sweeps p."""
    groups = _sweep_groups(runs)
    if not groups:
        return None
    ids = environment_ids(runs)
    fig, ax = _sweep_figure(groups, "Test error (Fig. 1c)", "test error")
    for i, (env, members) in enumerate(groups.items()):
        pts = [(_p_of(r), 1.0 - float(r["test_acc"])) for r in members if _finite(r.get("test_acc"))]
        if pts:
            _mean_line(ax, pts, PALETTE[i % len(PALETTE)] if len(groups) > 1 else "tab:blue", _line_label(env, ids, len(groups)))
    _legend(ax, len(groups))
    return _png(fig)


test_error_vs_p.__test__ = False  # not a pytest test, whatever its name says


def _twin_id(run: Mapping[str, Any]) -> tuple:
    """What a run shares with its natural twin: the pair key, else environment and seed."""
    pk = run.get("pair_key")
    return ("pair", pk) if pk else ("env", environment_of(run), run.get("seed"))

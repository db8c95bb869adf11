"""Shared machinery of the weight-perturbation measures (families ``pacbayes`` and ``sharpness``).

The measures here never touch ``ctx.model``: a :class:`Perturbable` holds the trained values
of the parameters as detached tensors and evaluates the network at *other* values with
``torch.func.functional_call`` (no deep copy per draw or per ascent step). What is perturbed:

- **every parameter** of the model (weights and biases of every layer, normalization shifts and
  scales), not only the layer weights as in nitarshan's code; buffers (BatchNorm running
  statistics) are kept fixed;
- on the **BatchNorm-folded** network ``ctx.folded_model()``: each eval-mode BatchNorm is
  folded into the Linear/Conv layer it follows and replaced by the identity (see
  ``gentest.context.fold_batchnorm``), as nitarshan's ``_reparam`` does before perturbing.
  Perturbing an unfolded network would put noise on the pre-normalization weights, whose
  scale BatchNorm cancels. A BatchNorm that cannot be folded makes the measure not applicable
  (:class:`~gentest.errors.NotApplicable`, raised by the context). The folded network
  computes the same function as the trained one (in eval mode); its parameter count ω can
  exceed the model's by the conv biases that folding creates. A model without BatchNorm is
  used as it is.

Accuracies and losses are computed on a fixed subsample of the training set *as trained*
(randomized labels included): :data:`SUBSAMPLE` examples drawn without replacement by a
generator seeded from the run's pair and the name of the search (:func:`search_generator`), the
same for every measure that shares a search.

Searches that several measures share (the σ of PAC-Bayes, the α′ of worst-case sharpness) are
cached on the :class:`~gentest.context.RunCache` under a key, as a small tensor
``[value, steps, displacement]``, so they run once per run whichever measure asks first. Their
random draws come from :func:`search_generator` — a generator seeded, exactly as
``ctx.generator`` is, from the run's pair and the *search's* name rather than the measure's —
so the shared value does not depend on which measure happened to ask first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from gentest.errors import NotApplicable

SUBSAMPLE = 1000  # training examples on which perturbed accuracies / losses are measured
EVAL_BATCH = 4096  # examples per forward pass
DRAW_BATCH = 4096  # (draws × examples) per batched forward pass of ``accuracies``, as EVAL_BATCH

CONSTANT = 10.0  # the "+ 10" of Jiang et al.'s bounds (stands in for the log(1/δ) terms)

Values = list[torch.Tensor]  # one tensor per perturbed parameter, in Perturbable.names order


# --- functional evaluation ---------------------------------------------------------------------


@dataclass
class Perturbable:
    """A network evaluated at arbitrary parameter values, functionally (``module`` is never modified)."""

    module: nn.Module
    names: list[str]
    params: Values  # trained values, detached
    buffers: dict[str, torch.Tensor]

    @classmethod
    def of(cls, model: nn.Module) -> "Perturbable":
        module = model.eval()
        named = [(n, p.detach()) for n, p in module.named_parameters()]
        if not named:
            raise NotApplicable("the model has no parameters to perturb")
        return cls(
            module,
            [n for n, _ in named],
            [p for _, p in named],
            {n: b.detach() for n, b in module.named_buffers()},
        )

    @property
    def omega(self) -> int:
        """ω, the number of perturbed parameters."""
        return sum(p.numel() for p in self.params)

    def flat(self) -> torch.Tensor:
        """The trained parameters as one float64 vector."""
        return torch.cat([p.reshape(-1).double() for p in self.params])

    def logits(self, values: Values, x: torch.Tensor) -> torch.Tensor:
        state = {**self.buffers, **dict(zip(self.names, values))}
        return torch.cat(
            [functional_call(self.module, state, (x[i : i + EVAL_BATCH],)) for i in range(0, len(x), EVAL_BATCH)]
        )

    def correct_counts(self, batched: Values, x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """For K parameter settings given as tensors of shape (K, *shape) per parameter: one
        ``vmap``-ed forward pass per chunk of examples, yielding (examples seen so far, float64
        count of correct predictions per draw in this chunk)."""
        draws = batched[0].shape[0]
        chunk = max(1, DRAW_BATCH // draws)

        def one(xs: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
            return functional_call(self.module, {**self.buffers, **dict(zip(self.names, values))}, (xs,))

        with torch.no_grad():
            for i in range(0, len(x), chunk):
                logits = vmap(one, in_dims=(None,) + (0,) * len(batched))(x[i : i + chunk], *batched)
                yield min(i + chunk, len(x)), (logits.argmax(dim=-1) == y[i : i + chunk]).sum(dim=1).double().cpu()

    def accuracies(self, batched: Values, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Accuracies (float64, one per draw) at K parameter settings (see :meth:`correct_counts`)."""
        correct = torch.zeros(batched[0].shape[0], dtype=torch.float64)
        for _, counts in self.correct_counts(batched, x, y):
            correct += counts
        return correct / len(x)

    def mean_accuracy_change(
        self, batched: Values, x: torch.Tensor, y: torch.Tensor, acc0: float, stop_above: float | None = None
    ) -> float:
        """|mean over the K draws of their accuracies − acc0|, exactly ``abs(accuracies(...).mean()
        − acc0)``.

        ``stop_above``: stop after a chunk once the change is sure to exceed it whatever the
        examples not yet seen do (each counted right, or wrong), and return that lower bound:
        far above the crossing, where noise ruins most predictions, a fraction of the pass
        decides it."""
        draws, n = batched[0].shape[0], len(x)
        correct = torch.zeros(draws, dtype=torch.float64)
        for seen, counts in self.correct_counts(batched, x, y):
            correct += counts
            if stop_above is not None and seen < n:
                low = correct.sum().item() / (draws * n)  # mean accuracy if every unseen one is wrong
                high = low + (n - seen) / n  # ... and if every one is right
                nearest = 0.0 if low <= acc0 <= high else min(abs(low - acc0), abs(high - acc0))
                if nearest > stop_above + 1e-9:  # the margin absorbs rounding in low/high
                    return nearest
        return abs((correct / n).mean().item() - acc0)

    def accuracy(self, values: Values, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return (self.logits(values, x).argmax(dim=1) == y).double().mean().item()

    def loss_and_grad(self, values: Values, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, Values]:
        """Mean cross-entropy, accuracy and the gradient of the loss at ``values``."""
        leaves = [v.detach().requires_grad_(True) for v in values]
        logits = self.logits(leaves, x)
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, leaves)
        acc = (logits.detach().argmax(dim=1) == y).double().mean().item()
        return loss.item(), acc, list(grads)


def perturbable(ctx, init: bool = False) -> Perturbable:
    """The BatchNorm-folded trained (or with ``init=True`` initial) model of ``ctx`` (a fresh
    copy from ``ctx.folded_model``) as a Perturbable. NotApplicable if BatchNorm cannot be folded."""
    return Perturbable.of(ctx.folded_model(init=init))


def parameter_vectors(ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, w⁰): all parameters of the (BatchNorm-folded) trained and initial models, float64."""
    w, w0 = perturbable(ctx).flat(), perturbable(ctx, init=True).flat()
    if w.shape != w0.shape:
        raise ValueError("the trained and initial models have different parameter shapes")
    return w, w0


def pacbayes_bound(sq_norm: float, sigma: float, m: int) -> float:
    """Jiang et al. 2020 eqs. (48)/(49): ‖r‖²/(4σ²) + log(m/σ) + 10."""
    return sq_norm / (4 * sigma**2) + math.log(m / sigma) + CONSTANT


# --- randomness and data -----------------------------------------------------------------------


def search_generator(ctx, search: str) -> torch.Generator:
    """The generator of a search shared between measures: seeded like ``ctx.generator`` (from
    the run's pair and a name) but with the search's name, so the result does not depend on
    which measure runs it."""
    return ctx.stream(search)


def train_subsample(ctx, generator: torch.Generator, n: int = SUBSAMPLE) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training examples (as trained) drawn without replacement; all of them if fewer."""
    x, y = ctx.x_train, ctx.y_train
    if len(y) == 0:
        raise ValueError("the training set is empty")
    if len(y) <= n:
        return x, y
    idx = torch.randperm(len(y), generator=generator)[:n].to(y.device)
    return x[idx], y[idx]


def gaussian_noise(
    params: Values, sigma: float, generator: torch.Generator, magnitude_eps: float | None = None, draws: int = 1
) -> Values:
    """``draws`` independent draws u ~ N(0, diag(s²)), one tensor of shape (draws, *p.shape)
    per parameter tensor p, where s is the noise STANDARD DEVIATION:

    - plain: s = σ for every parameter;
    - magnitude-aware (``magnitude_eps`` = ε given): s_i = sqrt(σ²·w_i² + ε²).

    nitarshan's ``_perturbed_model`` passes σ² (plain) and σ²·w² + ε² (magnitude-aware) as the
    std argument of ``torch.normal``; we use the standard deviations above.
    """
    out = []
    for p in params:
        z = torch.randn((draws,) + tuple(p.shape), generator=generator, dtype=p.dtype).to(p.device)
        if magnitude_eps is None:
            out.append(sigma * z)
        else:
            out.append(torch.sqrt(sigma**2 * p.pow(2) + magnitude_eps**2) * z)
    return out


# --- searches --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    value: float
    steps: int  # bisection steps evaluated
    displacement: float  # accuracy change at the returned value
    upper: float = float("nan")  # the bracket's upper end: the crossing lies in [value, upper]

    def tensor(self) -> torch.Tensor:
        return torch.tensor([self.value, float(self.steps), self.displacement, self.upper], dtype=torch.float64)

    @classmethod
    def of(cls, t: torch.Tensor) -> "SearchResult":
        return cls(t[0].item(), int(t[1].item()), t[2].item(), t[3].item())

    def spread(self, f: Callable[[float], float]) -> float:
        """|f(value) − f(upper)|: how far a value f(σ) computed from the search's result could be
        from the one at any σ in the final bracket (the recorded ``uncertainty`` of a
        tolerance-stopped search; a deeper search with the same draws ends inside the bracket)."""
        return abs(f(self.value) - f(self.upper)) if self.value > 0 else float("nan")


def bisect(
    displacement: Callable[[float], float],
    lower: float,
    upper: float,
    steps: int,
    target: float = 0.1,
    tolerance: float | None = None,
    geometric: bool = False,
    rtol: float | None = None,
) -> SearchResult:
    """Bisection for the largest value whose accuracy displacement is at most ``target``.

    At most ``steps`` midpoints; a displacement above ``target`` moves the upper end down, one
    at or below it moves the lower end up. Returns the final lower end — the largest midpoint
    evaluated whose displacement was at most ``target`` — with that displacement and the final
    upper end; if no midpoint met the target, the initial ``lower`` with the displacement of
    the smallest midpoint tried (above ``target``: the caller decides). ``geometric=True``
    bisects in log scale (midpoint sqrt(lower·upper), lower > 0), for quantities spanning
    several orders of magnitude. ``displacement`` may return any value above ``target`` for a
    midpoint it can tell is over without computing the exact change (only the decision and
    the lower end's displacement are used).

    ``rtol`` stops the search once a midpoint has met the target and the bracket is within
    that relative tolerance, upper − lower ≤ rtol·lower: the crossing is then known to
    ``rtol``, and the midpoints evaluated are the first ones a full-depth search with the same
    draws would evaluate, so its answer lies in the returned bracket [value, upper]. (This is
    how Dziugaite & Roy 2017 and Jiang et al. 2020 use the σ search: a noise level to a stated
    precision; nitarshan's ``_pacbayes_sigma`` instead stops on the displacement.)

    With a ``tolerance`` (nitarshan's ``_pacbayes_sigma``: 0.01) the search instead stops at
    the first midpoint whose displacement is within ``tolerance`` of ``target`` and returns
    it. The measures do not use that: stopping early returns one of the coarse early
    midpoints, so runs whose crossing points are close get *identical* values (on the default
    suite a random-label and a random-pixel run both got σ = 0.037109375, the 10th arithmetic
    midpoint of [0, 2]) — ties that a randomization test cannot score.
    """
    met: float | None = None  # displacement at the current lower end, once a midpoint met the target
    over = float("nan")  # displacement at the current upper end
    k = 0
    for k in range(1, steps + 1):
        value = math.sqrt(lower * upper) if geometric else (lower + upper) / 2
        d = displacement(value)
        if tolerance is not None and abs(d - target) < tolerance:
            return SearchResult(value, k, d, value)
        if d > target:
            upper, over = value, d
        else:
            lower, met = value, d
        if rtol is not None and met is not None and upper - lower <= rtol * lower:
            break
    return SearchResult(lower, k, met if met is not None else over, upper)


def ascend(
    pert: Perturbable,
    x: torch.Tensor,
    y: torch.Tensor,
    radius: Sequence[torch.Tensor | float],
    steps: int,
    start: tuple[float, float, Values] | None = None,
    stop_above: float | None = None,
) -> tuple[float, float, float, float]:
    """Projected sign-gradient ascent of the cross-entropy over the box |ζ_i| ≤ r_i around w.

    Start at ζ = 0; step 1 moves every coordinate by r_i in the sign of the gradient (the corner
    of the box that maximizes the first-order model of the loss); each later step moves by
    r_i/2 in the sign of the gradient at the current point; after each step ζ is projected
    (clamped) back into the box. The loss and accuracy are recorded at every iterate (ζ_0 = 0,
    ζ_1 … ζ_steps): ``steps`` forward+backward passes and one final forward pass.

    Returns (loss at w, accuracy at w, the largest loss over the iterates, the largest accuracy
    change |acc(w + ζ_t) − acc(w)| over the iterates). ``start`` = ``pert.loss_and_grad(
    pert.params, x, y)`` computed once saves a forward+backward pass per call in a search.

    ``stop_above``: return as soon as an iterate's accuracy change exceeds it (a search only
    needs to know that the largest change is above its target; the maximum cannot go down).
    Each iterate's accuracy is read from its forward pass before the backward pass is made, so
    that iterate costs one forward pass. The returned maximum loss and change are then those of
    the iterates made; with ``stop_above=None`` (or when no change exceeds it) the results are
    exactly those of the full ascent.
    """
    zeta = [torch.zeros_like(p) for p in pert.params]
    loss0, acc0, grads = start if start is not None else pert.loss_and_grad(pert.params, x, y)
    best_loss, worst_change = loss0, 0.0
    for t in range(1, steps + 1):
        eta = 1.0 if t == 1 else 0.5
        with torch.no_grad():
            zeta = [torch.clamp(z + eta * r * g.sign(), -r, r) for z, r, g in zip(zeta, radius, grads)]
            values = [p + z for p, z in zip(pert.params, zeta)]
        if t < steps:
            leaves = [v.detach().requires_grad_(True) for v in values]
            logits = pert.logits(leaves, x)
            loss_t = F.cross_entropy(logits, y)
            acc = (logits.detach().argmax(dim=1) == y).double().mean().item()
            if stop_above is not None and abs(acc - acc0) > stop_above:
                return loss0, acc0, max(best_loss, loss_t.item()), abs(acc - acc0)
            grads = list(torch.autograd.grad(loss_t, leaves))
            loss = loss_t.item()
        else:
            with torch.no_grad():
                logits = pert.logits(values, x)
                loss = F.cross_entropy(logits, y).item()
                acc = (logits.argmax(dim=1) == y).double().mean().item()
        best_loss = max(best_loss, loss)
        worst_change = max(worst_change, abs(acc - acc0))
    return loss0, acc0, best_loss, worst_change


def cached_search(ctx, key: str, compute: Callable[[], SearchResult]) -> SearchResult:
    """``compute()`` once per run: cached on the run's RunCache under ``key``."""
    return SearchResult.of(ctx.shared(key, lambda: compute().tensor()))

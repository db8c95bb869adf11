"""Gradient-noise measures (family ``gradient-noise``): statistics of the per-example gradients
of the training loss at the end of training, computed with BackPACK.

Jiang et al. 2020 ("Fantastic generalization measures and where to find them", ICLR 2020)
study the noise of the gradient at the end of training among their optimization-based
measures and report it as informative; Liu et al. 2020 ("Understanding why neural networks
generalize well through GSNR of parameters", ICLR 2020) relate the gradient signal-to-noise
ratio to the generalization gap. The three measures here share one BackPACK pass:

- g_i = ∇_w ℓ(f_w(x_i), y_i) is the gradient of the cross-entropy of training example i (as
  trained: randomized labels included) with respect to *all* parameters (weights, biases,
  normalization shifts), in eval mode (BatchNorm uses its running statistics, dropout is off).
- The examples are a seeded subsample of ``SUBSAMPLE`` training examples (all of them when the
  training set is smaller), in mini-batches of ``BATCH``. The subsample is drawn from the
  generator of a context named ``gradient_noise`` (seeded by the run and that name), not from
  the calling measure's own generator, so the three measures see the same examples whichever
  of them is computed first.
- The n gradients are treated as a sample from the data distribution (as trained):
  ḡ = (1/n) Σ_i g_i; the total variance tr Cov = Σ_j Var[g_j] (the trace of the gradient
  covariance, the sum over parameters of the per-parameter variances) is estimated without
  bias by S = (1/(n−1)) Σ_i ‖g_i − ḡ‖² = (Σ_i ‖g_i‖² − n‖ḡ‖²)/(n−1); the squared norm of the
  mean gradient ‖E g‖² by the unbiased U-statistic (1/(n(n−1))) Σ_{i≠j} g_i·g_j = ‖ḡ‖² − S/n.
  The plug-in ‖ḡ‖² is biased upward by tr Cov / n, and at the end of training that bias is
  as large as the signal itself: on the default suite the plug-in SNR is 0.0012–0.0039 with
  n = 1,024 (floor 1/n ≈ 0.001), the debiased one 0.0002–0.0029, which agrees with the value
  from all 4,000 training examples.
- BackPACK: a deep copy of the model is ``extend``-ed and the loss is
  ``extend(nn.CrossEntropyLoss(reduction="sum"))``; under ``BatchL2Grad`` one backward pass
  gives ‖g_i‖² per parameter tensor (``p.batch_l2``) and the ordinary ``p.grad`` gives Σ_i g_i.
  BackPACK's per-example quantities carry the loss's reduction: with the default mean
  reduction ``BatchGrad`` returns g_i / B and ``BatchL2Grad`` ‖g_i‖² / B² for a batch of B;
  with the sum reduction used here they are g_i and ‖g_i‖² exactly, so nothing is rescaled.
  Sums are accumulated in float64.

Models BackPACK cannot handle raise :class:`NotApplicable` with the reason: a module with
parameters of a class BackPACK has no ``BatchL2Grad`` extension for (LayerNorm, GroupNorm, a
custom module that owns its parameters), a module called more than once per forward pass or
parameters shared between modules (BackPACK would keep only one call's statistics or crash),
an in-place operation on a module's output (``ReLU(inplace=True)``: BackPACK's backward hooks
forbid it), BatchNorm without running statistics (it normalizes with batch statistics, which
mix the examples), or BackPACK's own ``NotImplementedError``. These are checked explicitly,
because for a module without an extension first-order BackPACK only warns and leaves its
parameters without statistics. Custom containers whose parameters all live in supported
leaf modules (Linear, Conv, eval-mode BatchNorm) are fine: first-order BackPACK needs only
each leaf's input and output gradient, so gentest's Inception (branches concatenated in
custom blocks) is computed exactly. BatchNorm2d subclasses that keep BatchNorm2d's forward
(its ``ShiftOnlyBatchNorm2d``, with a fixed unit scale) are given BackPACK's BatchNorm
extension, which BackPACK looks up by exact class (found with the context's
``standard_batchnorm_subclasses`` query, not by importing a model class).
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn

from gentest.context import standard_batchnorm_subclasses
from gentest.errors import NotApplicable
from gentest.registry import measure

# Version 2: random draws are common to the twins of a pair (MeasureContext seeds its
# generators from the pair, not the run), so values computed by version 1 are recomputed.
VERSION = 2

SUBSAMPLE = 1024  # training examples, drawn once per run (see the module docstring)
BATCH = 256  # examples per BackPACK forward/backward pass
STATS_KEY = "gradient_noise/stats"
REQUIRES = {"train_data", "grad", "per_sample_grad"}
# Layout of the cached statistics tensor (float64).
N, MEAN_SQ_NORM, MEAN_NORM, MEAN_GRAD_SQ_NORM = range(4)
# Below this fraction of (1/n)Σ‖g_i‖², S is float32 rounding of identical gradients, not noise.
RESOLUTION = 1e-5


def _owners(model: nn.Module) -> dict[int, tuple[str, nn.Module]]:
    """id(parameter) -> (module name, module) of the module that holds it directly."""
    owners: dict[int, tuple[str, nn.Module]] = {}
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            owners[id(p)] = (name, module)
    return owners


def _describe(name: str, module: nn.Module) -> str:
    return f"{type(module).__name__} ('{name}')" if name else type(module).__name__


def _check_no_sharing(model: nn.Module) -> None:
    seen: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            raise NotApplicable(
                f"BackPACK cannot extend a model whose parameters are shared ('{seen[id(p)]}' is also '{name}'): "
                "per-example statistics of reused parameters are not supported"
            )
        seen[id(p)] = name


def _check_batch_statistics(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is None:
            raise NotApplicable(
                f"BackPACK cannot extend {_describe(name, module)}: without running statistics it normalizes "
                "with the statistics of the batch, which mixes the examples, so per-example gradients are undefined"
            )


def _check_single_calls(params, owners, calls: dict[int, int]) -> None:
    for p in params:
        name, module = owners[id(p)]
        count = calls.get(id(module), 0)
        if count > 1:
            raise NotApplicable(
                f"BackPACK cannot extend {_describe(name, module)}: it is called {count} times in one "
                "forward pass (reused parameters)"
            )


@contextlib.contextmanager
def _as_not_applicable():
    """Turn BackPACK's failures on an unsupported model into NotApplicable."""
    try:
        yield
    except NotImplementedError as e:  # BackPACK: unsupported module or hyperparameter
        raise NotApplicable(f"BackPACK cannot extend this model: {e}") from None
    except RuntimeError as e:
        if "BackwardHook" not in str(e):
            raise
        # BackPACK's full backward hooks forbid modifying a module's output in place.
        raise NotApplicable(
            "BackPACK cannot extend a model that modifies a module's output in place "
            f"(e.g. ReLU(inplace=True)): {str(e).splitlines()[0]}"
        ) from None


def compute_stats(ctx) -> torch.Tensor:
    """[n, (1/n)Σ‖g_i‖², (1/n)Σ‖g_i‖, ‖ḡ‖²] as a float64 tensor, from one BackPACK pass."""
    from backpack import backpack, extend
    from backpack.context import CTX
    from backpack.extensions import BatchL2Grad
    from backpack.extensions.firstorder.batch_l2_grad.batchnorm_nd import BatchL2BatchNorm

    # A copy of the measure's model: BackPACK's extend and the backward pass leave hooks,
    # gradients and batch_l2 fields on it. The examples come from the stream named
    # "gradient_noise", the same for all three measures.
    generator = ctx.stream("gradient_noise")
    model = copy.deepcopy(ctx.model).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters, so there are no gradients")
    _check_no_sharing(model)
    _check_batch_statistics(model)
    owners = _owners(model)
    n_total = ctx.n_train
    n = min(SUBSAMPLE, n_total)
    if n < 2:
        raise ValueError(f"gradient noise needs at least 2 training examples, the run has {n_total}")
    idx = torch.randperm(n_total, generator=generator)[:n].sort().values.to(ctx.x_train.device)
    x, y = ctx.x_train[idx], ctx.y_train[idx]

    calls: dict[int, int] = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
        for module in {id(m): m for _, m in owners.values()}.values()
    ]
    n_handles = len(CTX.hook_handles)
    sum_sq = torch.zeros((), dtype=torch.float64, device=x.device)
    sum_norm = torch.zeros((), dtype=torch.float64, device=x.device)
    grad_sum = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    extension = BatchL2Grad()
    # BatchNorm2d subclasses that keep its forward (gentest's shift-only BatchNorm, the default
    # Inception: a fixed unit scale as a buffer, so only the shift gets statistics) compute
    # exactly nn.BatchNorm2d; BackPACK looks extensions up by exact class, so map them to it.
    for bn_class in standard_batchnorm_subclasses(model):
        extension.set_module_extension(bn_class, BatchL2BatchNorm())
    try:
        with _as_not_applicable():
            extend(model)
            loss_fn = extend(nn.CrossEntropyLoss(reduction="sum"))
        for start in range(0, n, BATCH):
            xb, yb = x[start : start + BATCH], y[start : start + BATCH]
            calls.clear()
            for p in params:
                p.grad = None
                if hasattr(p, "batch_l2"):
                    del p.batch_l2
            with warnings.catch_warnings():
                # BackPACK warns about containers with parameters (e.g. an Inception block);
                # what it actually failed to compute is checked below, parameter by parameter.
                warnings.simplefilter("ignore", UserWarning)
                with backpack(extension), _as_not_applicable():
                    loss = loss_fn(model(xb), yb)
                    _check_single_calls(params, owners, calls)  # before backward: BackPACK would crash
                    loss.backward()
            batch_sq = torch.zeros(len(yb), dtype=torch.float64, device=x.device)
            for p, acc in zip(params, grad_sum):
                name, module = owners[id(p)]
                if calls.get(id(module), 0) == 0:  # not used in the forward pass: zero gradient
                    continue
                if not hasattr(p, "batch_l2"):
                    raise NotApplicable(
                        f"BackPACK cannot extend {_describe(name, module)}: BatchL2Grad has no extension "
                        "for this module class"
                    )
                batch_sq += p.batch_l2.double()
                if p.grad is not None:
                    acc += p.grad.double()
            sum_sq += batch_sq.sum()
            sum_norm += batch_sq.sqrt().sum()
    finally:
        for h in hooks:
            h.remove()
        for handle in CTX.hook_handles[n_handles:]:  # only the hooks our extend() registered
            handle.remove()
        del CTX.hook_handles[n_handles:]
    mean_grad_sq = sum(acc.div(n).pow(2).sum() for acc in grad_sum)
    return torch.stack([torch.tensor(float(n), dtype=torch.float64, device=x.device), sum_sq / n, sum_norm / n, mean_grad_sq]).cpu()


def gradient_stats(ctx) -> torch.Tensor:
    """The cached statistics of :func:`compute_stats` (one BackPACK pass per run)."""
    stats = ctx.shared(STATS_KEY, lambda: compute_stats(ctx))
    ctx.record(examples=int(stats[N].item()), batch=BATCH)
    return stats


def trace_covariance(stats: torch.Tensor) -> float:
    """S = (Σ‖g_i‖² − n‖ḡ‖²)/(n−1), the unbiased estimate of tr Cov (≥ 0 up to rounding)."""
    n = stats[N].item()
    return max(0.0, (n / (n - 1)) * (stats[MEAN_SQ_NORM] - stats[MEAN_GRAD_SQ_NORM]).item())


def mean_gradient_sq_norm(stats: torch.Tensor) -> float:
    """‖ḡ‖² − S/n, the unbiased estimate of ‖E g‖² (negative when no signal is detectable)."""
    return stats[MEAN_GRAD_SQ_NORM].item() - trace_covariance(stats) / stats[N].item()


@measure("gradient_noise.variance", family="gradient-noise", version=VERSION, orientation="higher-worse", requires=REQUIRES)
def variance(ctx) -> float:
    """Total variance of the per-example training gradients, tr Cov[∇ℓ_i] = Σ_params Var_i, at the end of training.

    The "gradient noise" at the end of training of Jiang et al. 2020 (optimization-based
    measures; their equation number not checked). Jiang et al. take the variance of
    *mini-batch* gradients; for mini-batches of B examples drawn with replacement that is
    tr Cov / B, so this per-example version orders twins (same batch size) the same way and
    does not depend on B. Value S = (1/(n−1)) Σ_i ‖g_i − ḡ‖² over a seeded subsample of
    n = min(1024, n_train) training examples as trained; g_i the gradient of example i's
    cross-entropy with respect to all parameters, eval mode (see the module docstring for the
    BackPACK pass and its reduction scaling). Higher-worse: per-example gradients that
    disagree after fitting are the signature of memorized, mutually unrelated examples
    (random labels) — but note they also shrink with the final training loss, which the
    stopping rule (100 % train accuracy) does not equalize between twins. Cost: one
    forward/backward pass over the subsample (about 0.1–0.2 s for the default suite's MLP on
    two CPU cores), shared with the other gradient-noise measures.
    """
    return trace_covariance(gradient_stats(ctx))


@measure("gradient_noise.snr", family="gradient-noise", version=VERSION, orientation="higher-better", requires=REQUIRES)
def snr(ctx) -> float:
    """Gradient signal-to-noise ratio ‖E ∇ℓ_i‖² / tr Cov[∇ℓ_i] of the per-example training gradients.

    Liu et al. 2020, "Understanding why neural networks generalize well through GSNR of
    parameters" (ICLR 2020): the GSNR of a parameter is the squared mean of its gradient over
    the data distribution divided by its variance; they derive and observe that a larger GSNR
    goes with a smaller generalization gap — hence **higher-better**. Liu et al. average
    per-parameter ratios; we report the aggregate ratio Σ_j E[g_j]² / Σ_j Var[g_j]
    = ‖E g‖² / tr Cov (a variance-weighted mean of the per-parameter GSNRs), which stays
    defined when some parameters have zero gradient variance (dead units). Estimates: the
    unbiased U-statistic ‖ḡ‖² − S/n for ‖E g‖² over the unbiased S for tr Cov (module
    docstring: the plug-in ‖ḡ‖²/S would be dominated by its 1/n bias), so the value can be
    slightly negative when no signal is detectable. Same subsample, gradients and BackPACK pass
    as ``gradient_noise.variance``. Raises ValueError when S is 0 up to float32 rounding (below
    1e-5 · (1/n)Σ‖g_i‖², i.e. all per-example gradients equal).
    """
    stats = gradient_stats(ctx)
    noise = trace_covariance(stats)
    if noise <= RESOLUTION * stats[MEAN_SQ_NORM].item():
        raise ValueError(
            "gradient SNR is undefined: the per-example gradients have (up to float32 rounding) zero variance"
        )
    ctx.record(mean_gradient_sq_norm=mean_gradient_sq_norm(stats), plugin_snr=stats[MEAN_GRAD_SQ_NORM].item() / noise)
    return mean_gradient_sq_norm(stats) / noise


@measure(
    "gradient_noise.mean_per_sample_grad_norm", family="gradient-noise", version=VERSION, orientation="higher-worse", requires=REQUIRES
)
def mean_per_sample_grad_norm(ctx) -> float:
    """Mean L2 norm of the per-example training gradients, (1/n) Σ_i ‖∇ℓ_i‖₂, at the end of training.

    A per-sample-gradient statistic in the family of Jiang et al. 2020's gradient-noise
    measures (BackPACK's ``BatchL2Grad``: ‖g_i‖² per example, square root taken per example
    before averaging). Gradients of the per-example cross-entropy with respect to all
    parameters, eval mode, over the seeded subsample of n = min(1024, n_train) training
    examples as trained. Higher-worse: large per-example gradients after fitting mean the
    examples sit on steep parts of the loss (small margins), as for memorized random labels.
    Same BackPACK pass as ``gradient_noise.variance``.
    """
    return gradient_stats(ctx)[MEAN_NORM].item()

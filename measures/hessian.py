"""Curvature of the training loss (family ``hessian``): the top eigenvalue and the trace of the
Hessian, their scale-normalized versions, and one statistic of its eigenvalue density.

H = ∇²_w L(w) is the Hessian of the mean cross-entropy L(w) = (1/n) Σ_i ℓ(f_w(x_i), y_i) with
respect to **all** parameters w of ``model.parameters()`` (weights, biases, normalization
parameters; buffers such as BatchNorm running statistics are not parameters). Conventions
shared by every measure here:

- Data: a fixed subsample of SAMPLES = 1,000 training examples *as trained* (randomized
  labels or pixels included), drawn without replacement with a generator seeded from the
  run's pair and the name "hessian" (not from each measure's own generator), so that every
  Hessian measure of a run looks at the same H, the shared values below do not depend on which
  measure runs first, and the twins of a pair use the same example indices (common random
  numbers, ``gentest.context.random_stream_seed``). All of the training set when it is smaller.
- Model: a deep copy of the trained model in eval mode (BatchNorm with its running
  statistics, dropout off); ``ctx.model`` is untouched.
- Hessian-vector products (HVPs) by double backward (:class:`gentest.curvature.LossHessian`)
  for one shared computation per run (cached in the run's RunCache, ``shared_curvature``): a
  50-step Lanczos run that gives λ_max (its top Ritz value) and the spectral density, and the
  trace by Hutch++ on that run's Krylov space (Meyer et al. 2021; 16 more HVPs). PyHessian
  (PyPI pyhessian 0.1; anchors.md §2.5) is not used: its ``density()`` calls the removed
  ``torch.eig`` and its ``trace()`` draws from the global RNG (the trace before issue 17, kept
  in ``tests/reference_estimators.py``, ran it in a forked RNG with 50 Hutchinson probes).
- Every measure records ``hvps``: the HVPs its value took (the shared computation's, computed
  once per run). Estimates record their ``uncertainty`` (scoring's undecided pairs): the
  Hutch++ standard error for the trace, the Ritz residual bound for λ_max.

Cost on the default suite's MLP 3×512 (551k parameters) on a 2-core CPU, one thread: one HVP
on 1,000 examples ≈ 0.1 s; the shared computation 66 HVPs (≈ 7 s: 50 for Lanczos, λ_max and
the numerical rank, 16 more for the trace, where Hutchinson took 50); the ×‖w‖² measures reuse
the cached values. Larger models cost proportionally more, hence ``timeout_s = TIMEOUT_S``.

Sampling caveat: H on 1,000 of the 4,000 training examples is itself a random matrix. On the
default suite, λ_max moved by ±20% (natural labels) and by up to 2.5× (random labels, whose
top eigenvalues come from a few hard-to-fit examples) between different 1,000-example
subsamples; tr(H) by about ±12%. The subsample is fixed per run, so values are
reproducible, but small natural/random differences should be read with that in mind.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from gentest.curvature import (
    LossHessian,
    deflated_trace,
    gauss_quadrature,
    lanczos,
    rademacher,
    ritz_residuals,
    subsample,
)
from gentest.registry import measure

# Version 2: random draws are common to the twins of a pair (MeasureContext seeds its
# generators from the pair, not the run), so values computed by version 1 are recomputed.
VERSION = 2
# Version 3 of the trace measures: Hutch++ on the shared Lanczos run (16 probes) instead of
# Hutchinson with 50 (issue 17): a new estimate of the same tr(H), within the old one's error.
TRACE_VERSION = 3

SAMPLES = 1000  # training examples the Hessian is taken on
LANCZOS_STEPS = 50  # one Lanczos run per run (HVPs), shared by λ_max and the numerical rank
TRACE_PROBES = 16  # Hutch++ on the Lanczos run's complement: Rademacher probes (one HVP each)
SLQ_PROBES = 1  # stochastic Lanczos quadrature: probes (the first is the shared Lanczos run) ...
SLQ_STEPS = LANCZOS_STEPS  # ... × Lanczos steps (one HVP each)
RANK_RTOL = 1e-2  # numerical rank: count the eigenvalues above RANK_RTOL · λ_max
TIMEOUT_S = 600.0  # HVPs on large models on a CPU are slow (the harness's default is 120 s)

HESSIAN_SEED_NAME = "hessian"  # shared generator (the data subsample): seeded from the pair and this name
LANCZOS_SEED_NAME = "hessian/lanczos"  # the shared Lanczos run's start vector
TRACE_SEED_NAME = "hessian/trace"  # the trace's probes on the complement of the Krylov space
CURVATURE_KEY = "hessian/curvature"  # the shared computation, cached per run


def shared_generator(ctx) -> torch.Generator:
    """The generator shared by the Hessian measures of a run (see the module docstring)."""
    return ctx.stream(HESSIAN_SEED_NAME)


def hessian_batch(ctx, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = subsample(ctx.x_train, ctx.y_train, SAMPLES, generator)
    if len(y) == 0:
        raise ValueError("the training set is empty")
    return x, y


def _model_copy(ctx, device: torch.device) -> nn.Module:
    model = copy.deepcopy(ctx.model).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    return model


@dataclass(frozen=True)
class Curvature:
    """The run's shared curvature computation (see :func:`shared_curvature`)."""

    nodes: torch.Tensor  # Ritz values θ_k, ascending
    weights: torch.Tensor  # quadrature weights τ_k
    residuals: torch.Tensor  # Ritz residual bounds r_k
    lanczos_hvps: int
    trace: float
    trace_stderr: float
    trace_hvps: int  # the trace's own probes (it also uses the Lanczos run)

    def tensor(self) -> torch.Tensor:
        head = [float(len(self.nodes)), float(self.lanczos_hvps), self.trace, self.trace_stderr, float(self.trace_hvps)]
        return torch.cat([torch.tensor(head, dtype=torch.float64), self.nodes, self.weights, self.residuals])

    @classmethod
    def of(cls, t: torch.Tensor) -> "Curvature":
        k, lanczos_hvps, trace, stderr, trace_hvps = t[:5].tolist()
        k = int(k)
        rows = t[5:].reshape(3, k)
        return cls(rows[0], rows[1], rows[2], int(lanczos_hvps), trace, stderr, int(trace_hvps))


def shared_curvature(ctx) -> Curvature:
    """The run's one LANCZOS_STEPS-step Lanczos run on H and the trace built on it (cached per run).

    Lanczos: the start vector is a Rademacher probe from the stream LANCZOS_SEED_NAME, the data
    the shared subsample; its Ritz values θ_k (ascending), quadrature weights τ_k and residual
    bounds r_k serve ``hessian.top_eigenvalue`` (θ_max and its bound) and
    ``hessian.numerical_rank`` (the quadrature is its first probe). Trace: Hutch++ with the
    Krylov space as the sketch (:func:`gentest.curvature.deflated_trace`): Σ α_k exactly plus
    TRACE_PROBES Rademacher probes (stream TRACE_SEED_NAME) projected off the Lanczos basis.
    """

    def compute() -> torch.Tensor:
        x, y = hessian_batch(ctx, shared_generator(ctx))
        model = _model_copy(ctx, ctx.device)
        H = LossHessian(model, nn.CrossEntropyLoss(), x.to(ctx.device), y.to(ctx.device))
        probe = rademacher(H.dim, ctx.stream(LANCZOS_SEED_NAME), H.dtype, H.device)
        t = lanczos(H.matvec, probe, LANCZOS_STEPS, keep_basis=True)
        lanczos_hvps = H.hvps
        nodes, weights = gauss_quadrature(t)
        _, residuals = ritz_residuals(t)
        trace = deflated_trace(H.matvec, t, TRACE_PROBES, ctx.stream(TRACE_SEED_NAME))
        return Curvature(nodes, weights, residuals, lanczos_hvps, trace.value, trace.stderr, trace.matvecs).tensor()

    return Curvature.of(ctx.shared(CURVATURE_KEY, compute))


def shared_lanczos(ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Ritz values θ_k (ascending), quadrature weights τ_k, residual bounds r_k and the HVPs of
    the run's shared Lanczos run (:func:`shared_curvature`)."""
    c = shared_curvature(ctx)
    return c.nodes, c.weights, c.residuals, c.lanczos_hvps


def top_eigenvalue_and_hvps(ctx) -> tuple[float, float, int]:
    """λ_max of H as the top Ritz value of the shared Lanczos run, its residual bound, HVPs."""
    nodes, _, residuals, hvps = shared_lanczos(ctx)
    return nodes[-1].item(), residuals[-1].item(), hvps


def trace_and_hvps(ctx) -> tuple[float, int, float]:
    """tr(H) by Hutch++ on the shared Lanczos run (:func:`shared_curvature`), the HVPs it took
    (the Lanczos run's and its own probes'), and its standard error."""
    c = shared_curvature(ctx)
    return c.trace, c.lanczos_hvps + c.trace_hvps, c.trace_stderr


def squared_param_norm(ctx) -> float:
    """‖w‖² over the same parameters as the Hessian (all of ``model.parameters()``), float64."""
    return sum(p.detach().double().pow(2).sum().item() for p in ctx.model.parameters())


@measure(
    "hessian.top_eigenvalue",
    family="hessian", version=VERSION,
    orientation="higher-worse",
    requires={"train_data", "hvp"},
    timeout_s=TIMEOUT_S,
)
def top_eigenvalue(ctx) -> float:
    """Top eigenvalue λ_max of the Hessian of the training loss (Lanczos, top Ritz value).

    The local curvature behind the sharpness of Keskar et al. 2017 (anchors.md §3 "Hessian /
    curvature"; Yao et al.'s PyHessian computes it by power iteration). Not among Jiang et al.
    2020's equations. Here: the largest Ritz value θ_max of LANCZOS_STEPS = 50 Lanczos steps
    with full reorthogonalization from a Rademacher start vector (``gentest.curvature``), the
    same run that ``hessian.numerical_rank`` integrates over. Ritz values approach the extreme
    eigenvalues from inside, and the top one converges first: after 50 steps it agrees with a
    dense eigensolver to float rounding on the test models, where a power iteration stopped at
    a 1e-3 relative change of the Rayleigh quotient lands up to 0.5 % low. Lanczos finds the
    largest *algebraic* eigenvalue (power iteration, the largest in magnitude). The residual
    bound r = β_50·|s_last| (an eigenvalue of H lies within r of θ_max; ``ritz_residual``) is
    recorded as the value's ``uncertainty``. Data and conventions: see the module docstring
    (1,000 training examples as trained, all parameters, eval mode, mean cross-entropy); the
    subsample's own sampling noise (see there) is not in the bound. Not invariant to
    reparametrization (Dinh et al. 2017); see ``hessian.top_eigenvalue_x_weight_norm``.
    """
    value, residual, hvps = top_eigenvalue_and_hvps(ctx)
    ctx.record(hvps=hvps, ritz_residual=residual, uncertainty=residual, samples=min(SAMPLES, ctx.n_train))
    return value


@measure(
    "hessian.top_eigenvalue_x_weight_norm",
    family="hessian", version=VERSION,
    orientation="higher-worse",
    requires={"train_data", "hvp"},
    timeout_s=TIMEOUT_S,
)
def top_eigenvalue_x_weight_norm(ctx) -> float:
    """Scale-normalized sharpness λ_max(H)·‖w‖², ‖w‖ the L2 norm of all parameters.

    Dinh, Pascanu, Bengio & Bengio, "Sharp minima can generalize for deep nets" (ICML 2017)
    show that λ_max can be made arbitrarily large or small by rescaling the parameters without
    changing the function; multiplying by ‖w‖² removes the dependence on the unit of w: under
    the reparametrization w = c·u, H_u = c²·H_w and ‖u‖² = ‖w‖²/c², so the product is
    unchanged (it has the units of the loss). It is *not* invariant to Dinh et al.'s layer-wise
    rescalings (α_l per layer with Π α_l = 1), which a per-layer product ‖W_l‖²·λ(H_l) would
    need (Petzka et al. 2021, "Relative flatness and generalization"). anchors.md §3 writes
    λ_max/‖w‖², which is not scale-free; we multiply. λ_max is ``hessian.top_eigenvalue``'s
    (shared, computed once per run); ‖w‖² over the same parameters as H, float64.
    """
    value, residual, hvps = top_eigenvalue_and_hvps(ctx)
    norm_sq = squared_param_norm(ctx)
    ctx.record(hvps=hvps, ritz_residual=residual, uncertainty=residual * norm_sq, samples=min(SAMPLES, ctx.n_train))
    return value * norm_sq


@measure(
    "hessian.trace",
    family="hessian", version=TRACE_VERSION,
    orientation="higher-worse",
    requires={"train_data", "hvp"},
    timeout_s=TIMEOUT_S,
)
def trace(ctx) -> float:
    """Trace tr(H) of the Hessian of the training loss (Hutch++ on the shared Lanczos run).

    anchors.md §3 "Hessian / curvature" (PyHessian ``trace``: Hutchinson, tr(H) = E_v[vᵀHv]
    for v with independent ±1 entries). Here Hutch++ (Meyer, Musco, Musco & Woodruff,
    "Hutch++: optimal stochastic trace estimation", SOSA 2021, Algorithm 1) with the Krylov
    space Q of the shared 50-step Lanczos run as its sketch: tr(H) = tr(QᵀHQ) + tr((I−QQᵀ)H(I−QQᵀ)),
    the first term exactly Σ α_k (no extra HVP), the second by Hutchinson with TRACE_PROBES =
    16 Rademacher probes projected off Q (``gentest.curvature.deflated_trace``). Lanczos
    captures the large outlying eigenvalues that dominate Hutchinson's variance, so 16 probes
    on the rest gave a smaller standard error than Hutchinson's 50 on the whole H (version 2:
    PyHessian, 50 probes): 0.30 vs 0.43 at tr ≈ 20 on MLP 3×512, 0.49 vs 2.0 on the 1-D CNN,
    0.69–1.6 vs 1.2–2.3 on the ci runs. The recorded ``stderr`` and ``uncertainty`` are the
    probes' sample std/√16 (the Krylov part is exact given Q). Data and
    conventions: see the module docstring. Higher-worse: a larger total curvature is a sharper
    minimum.
    """
    value, hvps, stderr = trace_and_hvps(ctx)
    ctx.record(hvps=hvps, stderr=stderr, uncertainty=stderr, samples=min(SAMPLES, ctx.n_train))
    return value


@measure(
    "hessian.trace_x_weight_norm",
    family="hessian", version=TRACE_VERSION,
    orientation="higher-worse",
    requires={"train_data", "hvp"},
    timeout_s=TIMEOUT_S,
)
def trace_x_weight_norm(ctx) -> float:
    """Scale-normalized total curvature tr(H)·‖w‖², ‖w‖ the L2 norm of all parameters.

    The trace counterpart of ``hessian.top_eigenvalue_x_weight_norm`` (same invariance to a
    common rescaling w = c·u, same caveat about layer-wise rescalings); a whole-network
    version of Petzka et al. 2021's relative flatness ‖W_l‖²·tr(H_l). tr(H) is
    ``hessian.trace``'s (shared, computed once per run, Hutch++); the recorded ``stderr`` is that of
    the product (tr's standard error × ‖w‖²).
    """
    value, hvps, stderr = trace_and_hvps(ctx)
    norm_sq = squared_param_norm(ctx)
    ctx.record(hvps=hvps, stderr=stderr * norm_sq, uncertainty=stderr * norm_sq, samples=min(SAMPLES, ctx.n_train))
    return value * norm_sq


@measure(
    "hessian.numerical_rank",
    family="hessian", version=VERSION,
    orientation="higher-worse",
    requires={"train_data", "hvp"},
    timeout_s=TIMEOUT_S,
)
def numerical_rank(ctx) -> float:
    """Number of Hessian eigenvalues above λ_max/100, from the stochastic-Lanczos spectral density.

    Spectral density φ(t) = (1/P) Σ_i δ(t − λ_i) of H (P parameters) by stochastic Lanczos
    quadrature (SLQ), as in Ghorbani, Krishnan & Xiao, "An investigation into neural net
    optimization via Hessian eigenvalue density" (ICML 2019): SLQ_PROBES = 1 Rademacher probe ×
    SLQ_STEPS = 50 Lanczos steps with full reorthogonalization (``gentest.curvature``), nodes
    θ_k = Ritz values, weights τ_k = squared first components of the eigenvectors of T.
    Value: N = P · Σ_k τ_k [θ_k > RANK_RTOL·θ_max], RANK_RTOL = 1e-2, θ_max the largest Ritz
    value (≈ λ_max): an estimate of #{i : λ_i > λ_max/100}, the numerical rank of H at relative
    tolerance 1e-2 (float; not rounded).

    Why this statistic. Ghorbani et al. (and Sagun et al. 2017) describe the trained network's
    spectrum as a bulk concentrated at zero plus a few isolated outliers. Here the bulk is
    overwhelming: the Gauss–Newton part of H has rank ≤ n(C − 1) = 9,000 for 1,000 examples and
    10 classes, against P = 551k parameters, so ≥ 98% of the eigenvalues sit at ≈ 0 and SLQ
    lumps them into one or two Ritz nodes within ~1e-4 of zero. Statistics that depend on which
    side of zero that lump lands are quadrature artefacts: the negative spectral mass Σ_{θ<0} τ
    came out 0.28 or 0.98 on comparable runs for that reason alone, and |λ|- or λ/(λ+z)-weighted
    statistics (entropy effective rank, Maddox et al. 2020's effective dimensionality) are
    dominated by P × (the lump's tiny offset). Counting eigenvalues above a fraction of λ_max
    ignores the lump, is invariant to scaling H (a change of loss units), and is a hard-cutoff
    version of the "effective number of parameters" Σ_i λ_i/(λ_i + z) (MacKay 1992; Maddox,
    Benton & Wilson 2020): the number of directions the training data pin down. Higher-worse:
    more well-determined directions is a more complex fit (MacKay's Occam factor; Maddox et al.
    find effective dimensionality tracks generalization), e.g. memorizing random labels one
    example at a time rather than through ~C class directions (the C outliers of Sagun et al.,
    Papyan 2019).

    Noise: per probe, P·Σ τ_k[·] is a Hutchinson estimate of tr 1[H > τ] (relative standard
    deviation ≈ √(2/N)), plus the quadrature's smearing of eigenvalues near the threshold;
    across probes and 40 vs 80 steps we saw ±15–25% on the default suite, against a 2–3×
    natural/random difference. The first probe is the shared Lanczos run of
    ``hessian.top_eigenvalue`` (computed once per run, whichever asks first); further probes
    (SLQ_PROBES > 1) come from this measure's ``ctx.generator``; the data subsample is the
    shared one (module docstring). Cost: SLQ_PROBES × SLQ_STEPS = 50 HVPs plus the
    reorthogonalization (50 vectors of length P), shared with λ_max.
    """
    nodes, weights, _, hvps = shared_lanczos(ctx)
    quadratures = [(nodes, weights)]
    if SLQ_PROBES > 1:  # more probes than the shared run: from this measure's own generator
        x, y = hessian_batch(ctx, shared_generator(ctx))
        model = _model_copy(ctx, ctx.device)
        H = LossHessian(model, nn.CrossEntropyLoss(), x.to(ctx.device), y.to(ctx.device))
        quadratures += [
            gauss_quadrature(lanczos(H.matvec, rademacher(H.dim, ctx.generator, H.dtype, H.device), SLQ_STEPS))
            for _ in range(SLQ_PROBES - 1)
        ]
        hvps += H.hvps
    dim = sum(p.numel() for p in ctx.model.parameters())  # P: _model_copy makes every parameter trainable
    top = max(n[-1].item() for n, _ in quadratures)
    count = sum(dim * w[n > RANK_RTOL * top].sum().item() for n, w in quadratures) / SLQ_PROBES
    if not top > 0:
        raise ValueError(f"the Hessian has no positive Ritz value (largest {top:.3g}): the numerical rank is undefined")
    ctx.record(hvps=hvps, top_ritz_value=top, samples=min(SAMPLES, ctx.n_train), probes=SLQ_PROBES, steps=SLQ_STEPS)
    return count

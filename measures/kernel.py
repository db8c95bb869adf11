"""Norms of the closed-form learners' solutions (Zhang et al. 2017, §5).

- ``kernel.rkhs_norm``: the RKHS norm of a kernel-interpolation run's function
  f = Σ_i α_i k(x_i, ·), one function per class: ‖f‖_H = √(Σ_k α_kᵀKα_k) = √trace(αᵀKα) for
  the one-hot targets Y (with ridge λ = 0, Kα = Y, so this is also √trace(αᵀY)). The paper's
  "minimum norm" of the interpolating solution; it claims more norm → worse generalization.
- ``linear.minnorm_l2``: ‖w‖₂ (Frobenius over the C class columns) of a ``linear-minnorm`` or
  ``linear-sgd`` run: the minimum-norm solution of Φw = Y, or where SGD from zero ended.

Both say n/a (NotApplicable) on runs of other learners.
"""

from gentest.registry import measure


@measure("kernel.rkhs_norm", family="norm", orientation="higher-worse", requires={"train_data"})
def rkhs_norm(ctx) -> float:
    """RKHS norm √trace(αᵀKα) of a kernel-interpolation solution (n/a on other learners)."""
    return ctx.kernel().rkhs_norm()


@measure("linear.minnorm_l2", family="norm", orientation="higher-worse")
def minnorm_l2(ctx) -> float:
    """‖w‖₂ of a linear-minnorm / linear-sgd solution (n/a on other learners)."""
    return ctx.linear_solution().l2_norm()

"""The example measure: how far training moved the weights, relative to where they started.

Registered through the ``gentest.measures`` entry point in this package's pyproject.toml.
"""

import torch

from gentest import measure


@measure("example.relative_distance_from_init", family="norm", orientation="higher-worse", requires={"init"})
def relative_distance_from_init(ctx) -> float:
    """‖W − W⁰‖_F / ‖W⁰‖_F over all layer weight matrices (cf. Nagarajan & Kolter 2019).

    Memorizing noise takes the weights further from their initialization than learning the
    signal does, so this should separate natural from randomized twins.
    """
    moved = sum((w - w0).double().pow(2).sum() for w, w0 in ctx.weights(init=True))
    start = sum(w0.double().pow(2).sum() for _, w0 in ctx.weights(init=True))
    return torch.sqrt(moved / start).item()

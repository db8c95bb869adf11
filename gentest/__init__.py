"""gentest: randomization tests for generalization measures.

After Zhang et al., "Understanding deep learning requires rethinking generalization"
(ICLR 2017): train paired natural and randomized models with identical settings and ask
whether a measure of generalization can tell them apart.
"""

# The version of the gentest-harness distribution (pyproject.toml's [project] version; a test
# keeps the two equal). Imported from a source checkout too, where no distribution metadata exists.
__version__ = "0.1.0"

from gentest.registry import measure  # noqa: E402  (light: no torch import)

__all__ = ["measure", "__version__"]

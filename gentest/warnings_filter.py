"""Third-party warnings that say nothing to a gentest user (deprecations inside torch,
BackPACK, pyhessian) are silenced in the CLI and in workers; gentest's own warnings stay."""

from __future__ import annotations

import warnings


def quiet_third_party_warnings() -> None:
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|backpack|pyhessian|torchvision)\b")

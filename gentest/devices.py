"""Device choice: ``auto`` means CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from gentest.errors import GentestError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    if name not in DEVICE_CHOICES:
        raise GentestError(f"unknown device '{name}'; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GentestError("--device cuda was asked for, but PyTorch sees no CUDA device here")
    if name == "mps" and not torch.backends.mps.is_available():
        raise GentestError("--device mps was asked for, but PyTorch sees no MPS device here")
    return torch.device(name)

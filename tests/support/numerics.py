"""Float comparisons for tests: tolerances relative to the values' scale, never absolute."""
from __future__ import annotations

import torch


def max_scaled_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|`` in float64 (elementwise relative error is
    meaningless near zero; absolute tolerances depend on the values' scale)."""
    scale = max(expected.abs().max().item(), 1e-12)
    return (actual.double() - expected.double()).abs().max().item() / scale


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, rtol: float, msg: str = "") -> None:
    """Equal within ``rtol`` of the expected tensor's largest magnitude."""
    err = max_scaled_error(actual, expected)
    assert err <= rtol, f"{msg}: max error {err:.3g} of the largest magnitude > {rtol:g}"

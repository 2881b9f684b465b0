"""The Fréchet distance between two Gaussians: the one formula behind FID, FVD and E-FID.

``d² = |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½)`` (Dowson & Landau 1982), the quantity
pytorch-fid computes as ``tr(Σ₁ + Σ₂ − 2 sqrtm(Σ₁ Σ₂))``: the two traces are equal because
``Σ₁ Σ₂`` is similar to the symmetric ``Σ₁^½ Σ₂ Σ₁^½``. We take the symmetric route: two symmetric
eigendecompositions in float64, negative round-off eigenvalues clipped to 0. Unlike a general
``scipy.linalg.sqrtm`` of ``Σ₁ Σ₂`` it never returns complex parts or NaN for the singular
covariances that come from fewer samples than feature dimensions (FVD on a few dozen clips).
"""

from __future__ import annotations

import numpy as np


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of features: (N, D) -> ((D,), (D, D)) float64; N >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features: expected (N, D), got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"features: {len(x)} sample(s); a covariance needs at least 2 (give more frames or clips)")
    if not np.isfinite(x).all():
        raise ValueError("features: contain NaN or inf; check the metric network's weights and inputs")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2); (D,), (D, D) each -> float >= 0."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"frechet_distance: shapes {mu1.shape}, {sigma1.shape} vs {mu2.shape}, {sigma2.shape}; "
                         "expected two (D,) means and two (D, D) covariances of the same D")
    root1 = _psd_sqrt(sigma1)
    cross = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = float(np.sqrt(np.clip(cross, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def frechet_distance_of_features(a, b) -> float:
    """Fréchet distance of the Gaussians fitted to two feature sets: (N, D), (M, D) -> float."""
    return frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))

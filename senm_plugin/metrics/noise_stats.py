"""Noise statistics of clean/noisy pairs and the two classic baselines fitted to them (NumPy only).

Used by the noise evaluation: noise histograms, noise level against intensity, and Gaussian and
Poisson-Gaussian noise models fitted to the same pairs as the learned model. All functions work in whatever
units the arrays use (the evaluation passes float images in [0, 1]); pairs may be single arrays or lists of
arrays of any shape, clean and noisy matching element for element.
"""
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls


def _flatten_pairs(clean, noisy):
    """Clean values and noise (noisy - clean) of one pair or a list of pairs, as two flat float64 arrays."""
    if isinstance(clean, (list, tuple)):
        if len(clean) != len(noisy):
            raise ValueError(f'{len(clean)} clean images but {len(noisy)} noisy ones')
        pairs = [_flatten_pairs(c, n) for c, n in zip(clean, noisy)]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    clean = np.asarray(clean, dtype=np.float64)
    noisy = np.asarray(noisy, dtype=np.float64)
    if clean.shape != noisy.shape:
        raise ValueError(f'Clean shape {clean.shape} differs from noisy shape {noisy.shape}')
    return clean.ravel(), (noisy - clean).ravel()


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def noise_histogram(noise, bins=101, value_range=None):
    """Probability density histogram of noise values; returns (density, bin_edges).

    ``value_range`` defaults to a symmetric range covering the data, so real and generated noise can share one
    range when the caller passes the wider of the two.
    """
    noise = np.concatenate([np.ravel(n) for n in noise]) if isinstance(noise, (list, tuple)) else np.ravel(noise)
    if value_range is None:
        r = float(np.abs(noise).max()) if noise.size else 1.0
        value_range = (-r, r) if r > 0 else (-1.0, 1.0)
    return np.histogram(noise, bins=bins, range=value_range, density=True)


def noise_level_curve(clean, noisy, num_bins=16, value_range=(0.0, 1.0), min_count=1):
    """Noise standard deviation against clean intensity, over equal-width intensity bins.

    Returns:
        tuple: (bin_centers, std, count), each of length ``num_bins``; std is NaN for bins with fewer than
        ``min_count`` samples. std is the root mean square of the noise (zero-mean noise model).
    """
    x, n = _flatten_pairs(clean, noisy)
    edges = np.linspace(value_range[0], value_range[1], num_bins + 1)
    idx = np.clip(np.searchsorted(edges, x, side='right') - 1, 0, num_bins - 1)
    count = np.bincount(idx, minlength=num_bins)
    sq_sum = np.bincount(idx, weights=n**2, minlength=num_bins)
    with np.errstate(invalid='ignore', divide='ignore'):
        std = np.sqrt(sq_sum / count)
    std[count < max(min_count, 1)] = np.nan
    return (edges[:-1] + edges[1:]) / 2, std, count


@dataclass
class GaussianNoise:
    """Signal-independent zero-mean Gaussian noise n ~ N(0, sigma^2)."""
    sigma: float

    @classmethod
    def fit(cls, clean, noisy):
        """Maximum-likelihood sigma of zero-mean Gaussian noise: the root mean square of noisy - clean."""
        _, n = _flatten_pairs(clean, noisy)
        return cls(sigma=float(np.sqrt(np.mean(n**2))))

    def variance(self, x):
        """Noise variance at clean intensity ``x``."""
        return np.full_like(np.asarray(x, dtype=np.float64), self.sigma**2)

    def sample(self, clean, seed=None, clip=None):
        """Noisy version of ``clean``; ``clip=(lo, hi)`` clips the result to the image range."""
        clean = np.asarray(clean, dtype=np.float64)
        noisy = clean + _rng(seed).normal(0.0, self.sigma, clean.shape)
        return noisy if clip is None else np.clip(noisy, *clip)


@dataclass
class PoissonGaussianNoise:
    """Poisson-Gaussian noise: y = a * Poisson(x / a) + N(0, b), so var(y - x) = a * x + b."""
    a: float
    b: float

    @classmethod
    def fit(cls, clean, noisy, num_bins=32, value_range=(0.0, 1.0), min_count=16):
        """Fit a >= 0, b >= 0 in var(n) = a * x + b by non-negative least squares over intensity bins.

        Each intensity bin with at least ``min_count`` samples gives one point (bin centre, mean squared noise);
        the fit weighs the bins equally, so dense dark or bright regions do not dominate.
        """
        centers, std, count = noise_level_curve(clean, noisy, num_bins, value_range, min_count)
        keep = np.isfinite(std)
        if keep.sum() < 2:
            raise ValueError(f'Need at least two intensity bins with >= {min_count} samples to fit a and b; '
                             f'got {int(keep.sum())}')
        design = np.stack([centers[keep], np.ones(int(keep.sum()))], axis=1)
        (a, b), _ = nnls(design, std[keep]**2)
        return cls(a=float(a), b=float(b))

    def variance(self, x):
        """Noise variance at clean intensity ``x``."""
        return self.a * np.clip(np.asarray(x, dtype=np.float64), 0, None) + self.b

    def sample(self, clean, seed=None, clip=None):
        """Noisy version of ``clean`` (negative intensities count as zero for the shot noise)."""
        rng = _rng(seed)
        clean = np.asarray(clean, dtype=np.float64)
        if self.a > 0:
            shot = self.a * rng.poisson(np.clip(clean, 0, None) / self.a) - np.clip(clean, 0, None)
        else:
            shot = 0.0
        noisy = clean + shot + rng.normal(0.0, np.sqrt(self.b), clean.shape)
        return noisy if clip is None else np.clip(noisy, *clip)


def fit_gaussian(clean, noisy):
    """Gaussian noise model fitted to clean/noisy pairs (see ``GaussianNoise.fit``)."""
    return GaussianNoise.fit(clean, noisy)


def fit_poisson_gaussian(clean, noisy, **kwargs):
    """Poisson-Gaussian noise model fitted to clean/noisy pairs (see ``PoissonGaussianNoise.fit``)."""
    return PoissonGaussianNoise.fit(clean, noisy, **kwargs)

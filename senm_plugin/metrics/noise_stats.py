"""Noise statistics of clean/noisy pairs (NumPy only): noise histograms and noise level against intensity, for the
noise evaluation and the baselines' fits (``senm_plugin.noise.baselines``). All functions work in whatever
units the arrays use (the evaluation passes float images in [0, 1]); pairs may be single arrays or lists of
arrays of any shape, clean and noisy matching element for element.
"""
import numpy as np


def flatten_pairs(clean, noisy):
    """Clean values and noise (noisy - clean) of one pair or a list of pairs, as two flat float64 arrays."""
    if isinstance(clean, (list, tuple)):
        if len(clean) != len(noisy):
            raise ValueError(f'{len(clean)} clean images but {len(noisy)} noisy ones')
        pairs = [flatten_pairs(c, n) for c, n in zip(clean, noisy)]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    clean = np.asarray(clean, dtype=np.float64)
    noisy = np.asarray(noisy, dtype=np.float64)
    if clean.shape != noisy.shape:
        raise ValueError(f'Clean shape {clean.shape} differs from noisy shape {noisy.shape}')
    return clean.ravel(), (noisy - clean).ravel()


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
    x, n = flatten_pairs(clean, noisy)
    edges = np.linspace(value_range[0], value_range[1], num_bins + 1)
    idx = np.clip(np.searchsorted(edges, x, side='right') - 1, 0, num_bins - 1)
    count = np.bincount(idx, minlength=num_bins)
    sq_sum = np.bincount(idx, weights=n**2, minlength=num_bins)
    with np.errstate(invalid='ignore', divide='ignore'):
        std = np.sqrt(sq_sum / count)
    std[count < max(min_count, 1)] = np.nan
    return (edges[:-1] + edges[1:]) / 2, std, count

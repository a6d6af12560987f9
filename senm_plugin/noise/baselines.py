"""The two classic noise models a learned one must beat, fitted to the same real pairs: Gaussian noise of one sigma
and Poisson-Gaussian noise var(y - x) = a x + b (NumPy only; any units, the tools use [0, 1])."""
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from senm_plugin.metrics.noise_stats import flatten_pairs, noise_level_curve
from senm_plugin.noise.seeds import image_seed


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


@dataclass
class GaussianNoise:
    """Signal-independent zero-mean Gaussian noise n ~ N(0, sigma^2)."""
    sigma: float

    @classmethod
    def fit(cls, clean, noisy):
        """Maximum-likelihood sigma of zero-mean Gaussian noise: the root mean square of noisy - clean."""
        _, n = flatten_pairs(clean, noisy)
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


def quantise(x):
    """[0, 1] float image -> uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(x) * 255.), 0, 255).astype(np.uint8)


def baseline_noisy(model, clean_imgs, seed, stream):
    """uint8 noisy images of a fitted baseline noise model (``sample`` in [0, 1] units; one model, or a list of one
    per image), one seed per image."""
    models = model if isinstance(model, (list, tuple)) else [model] * len(clean_imgs)
    return [quantise(m.sample(x / 255., seed=image_seed(seed, i, stream), clip=(0., 1.)))
            for i, (m, x) in enumerate(zip(models, clean_imgs))]

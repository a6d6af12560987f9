"""Camera noise simulation and the SIDD noise-level prior, for the demo data and for level sampling at generation."""
import math

import numpy as np

# SIDD camera prior of the reference generator (zhengdihan/SeNM-VAE, SIDD/main_translate.py; REFERENCE.md):
# log10(shot) ~ U(log10 0.00068674, log10 0.02194856); log10(read) = 1.85 log10(shot) + 0.30 + N(0, 0.20).
SIDD_LOG_SHOT_RANGE = (math.log10(0.00068674), math.log10(0.02194856))
SIDD_READ_SLOPE, SIDD_READ_INTERCEPT, SIDD_READ_STD = 1.85, 0.30, 0.20
SRGB_GAMMA = 2.2


def sample_sidd_shot_read(num, rng):
    """Draw ``num`` (shot, read) noise parameters from the SIDD camera prior; returns two float arrays."""
    log_shot = rng.uniform(*SIDD_LOG_SHOT_RANGE, size=num)
    log_read = SIDD_READ_SLOPE * log_shot + SIDD_READ_INTERCEPT + rng.normal(0.0, SIDD_READ_STD, size=num)
    return 10.0**log_shot, 10.0**log_read


def sample_sidd_levels(num, rng):
    """Draw ``num`` degradation levels sqrt(shot + read) from the SIDD camera prior (the reference's level)."""
    shot, read = sample_sidd_shot_read(num, rng)
    return np.sqrt(shot + read)


def simulate_camera_noise(img, shot, read, rng):
    """Add signal-dependent camera noise to an 8-bit sRGB image.

    The image is linearised with a 2.2 gamma, noise of variance ``shot * x + read`` (Poisson-Gaussian, x in [0, 1]) is
    added per pixel and channel, and the result is gamma-encoded and quantised back to uint8.
    """
    x = (img.astype(np.float64) / 255.0)**SRGB_GAMMA
    y = x + np.sqrt(shot * x + read) * rng.standard_normal(x.shape)
    y = np.clip(y, 0.0, 1.0)**(1.0 / SRGB_GAMMA)
    return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)

"""The SIDD noise-level prior, for level sampling at generation (the simulated camera is ``noise.camera``)."""
import math

import numpy as np

# SIDD camera prior of the reference generator (zhengdihan/SeNM-VAE, SIDD/main_translate.py):
# log10(shot) ~ U(log10 0.00068674, log10 0.02194856); log10(read) = 1.85 log10(shot) + 0.30 + N(0, 0.20).
SIDD_LOG_SHOT_RANGE = (math.log10(0.00068674), math.log10(0.02194856))
SIDD_READ_SLOPE, SIDD_READ_INTERCEPT, SIDD_READ_STD = 1.85, 0.30, 0.20


def sample_sidd_shot_read(num, rng):
    """Draw ``num`` (shot, read) noise parameters from the SIDD camera prior; returns two float arrays."""
    log_shot = rng.uniform(*SIDD_LOG_SHOT_RANGE, size=num)
    log_read = SIDD_READ_SLOPE * log_shot + SIDD_READ_INTERCEPT + rng.normal(0.0, SIDD_READ_STD, size=num)
    return 10.0**log_shot, 10.0**log_read


def sample_sidd_levels(num, rng):
    """Draw ``num`` degradation levels sqrt(shot + read) from the SIDD camera prior (the reference's level)."""
    shot, read = sample_sidd_shot_read(num, rng)
    return np.sqrt(shot + read)

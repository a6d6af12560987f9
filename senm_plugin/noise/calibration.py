"""Fit the sampling temperature of a trained SeNM-VAE on real pairs, so that its noise is as strong as theirs.

A SeNM-VAE trained briefly (a CPU budget) renders noise of the right kind but too weak: its noise encoder has not yet
learnt to pass all of the real noise through the degradation latents, so draws from p(zn|z) deviate little from their
mean (benchmarks/RESULTS.md, "Learned noise on CPU"). The temperature, which multiplies every zn draw as in the
reference ``main_translate.py``, is then fitted on the paired domain the model was trained with: the value at which
the root mean square of the generated noise equals that of the real pairs, just as the Gaussian baseline's sigma is
fitted on the same pairs. It is a calibration of the amplitude only; the spatial, channel and intensity structure
of the noise still comes from the network.
"""
import numpy as np

TEMPERATURE_RANGE = (0.0, 16.0)


def noise_rms(clean_imgs, noisy_imgs):
    """Root mean square of noisy - clean over all pixels of the uint8 image pairs, in [0, 1] units."""
    sq = [np.mean((y.astype(np.float64) - x.astype(np.float64))**2) for x, y in zip(clean_imgs, noisy_imgs)]
    return float(np.sqrt(np.mean(sq))) / 255.0


def fit_temperature(net, clean_imgs, noisy_imgs, residual=False, seed=0, device='cpu', steps=12,
                    bounds=TEMPERATURE_RANGE):
    """The temperature at which ``net``'s noise on ``clean_imgs`` is as strong (rms) as the real noise of the pairs.

    Each pair is generated at its own level std(y - x), as in training. The generated rms grows with the
    temperature, so a bisection over ``bounds`` finds it; ``steps`` halvings give it to ``(hi - lo) / 2**steps``.
    Returns ``(temperature, facts)`` with the target and reached noise std in 8-bit levels.
    """
    from senm_plugin.generate import synthesize
    if not clean_imgs or len(clean_imgs) != len(noisy_imgs):
        raise ValueError(f'calibration needs matching clean and noisy images, got {len(clean_imgs)} and '
                         f'{len(noisy_imgs)}')
    levels = [float(np.std(y / 255.0 - x / 255.0)) for x, y in zip(clean_imgs, noisy_imgs)]
    target = noise_rms(clean_imgs, noisy_imgs)

    def rms_at(t):
        return noise_rms(clean_imgs, synthesize(net, clean_imgs, levels, seed, t, residual=residual, device=device))

    lo, hi = bounds
    reached = rms_at(hi)
    if reached < target:  # even the largest temperature is too weak: take it and say so in the facts
        return hi, {'target_std_8bit': target * 255, 'reached_std_8bit': reached * 255, 'saturated': True}
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if rms_at(mid) < target:
            lo = mid
        else:
            hi = mid
    temperature = 0.5 * (lo + hi)
    return temperature, {'target_std_8bit': target * 255, 'reached_std_8bit': rms_at(temperature) * 255,
                         'saturated': False}

"""Fit the sampling temperature of a trained SeNM-VAE on real pairs (``basicsr generate --temperature auto``).

A SeNM-VAE trained briefly (a CPU budget) renders noise of the right grain but weaker than the real noise: its noise
encoder has not yet passed all of the real noise into the degradation latents, so draws from p(zn|z) spread less
than they should (benchmarks/RESULTS.md, "Learned noise on CPU"). The temperature, which multiplies every zn draw as
in the reference ``main_translate.py``, is then fitted on the paired domain the model was trained with, just as the
Gaussian baseline's sigma is fitted on the same pairs. The criterion is AKLD (local Gaussian fits of generated
against real noise), not the grey-histogram KLD, which rewards nearly clean images, nor the noise rms alone: raising
the temperature until the rms matches also amplifies whatever the decoder renders wrongly, and the local statistics
then get worse (measured in RESULTS.md). Only the amplitude is fitted; the structure of the noise comes from the
network.
"""
import numpy as np

# temperatures tried by fit_temperature: 0.5 to 4 in steps of 0.25
TEMPERATURE_GRID = tuple(np.round(np.arange(0.5, 4.0001, 0.25), 2))


def noise_rms(clean_imgs, noisy_imgs):
    """Root mean square of noisy - clean over all pixels of the uint8 image pairs, in [0, 1] units."""
    sq = [np.mean((y.astype(np.float64) - x.astype(np.float64))**2) for x, y in zip(clean_imgs, noisy_imgs)]
    return float(np.sqrt(np.mean(sq))) / 255.0


def fit_temperature(net, clean_imgs, noisy_imgs, residual=False, seed=0, device='cpu', grid=TEMPERATURE_GRID):
    """The temperature of ``grid`` whose noise on ``clean_imgs`` is closest to the real pairs' noise by mean AKLD.

    Each pair is generated at its own level std(y - x), as in training, with the same seed for every temperature.
    Returns ``(temperature, facts)``: the AKLD at every temperature tried, and the real and generated noise std
    (8-bit levels) at the chosen one.
    """
    from senm_plugin.noise.model import synthesize
    from senm_plugin.metrics.noise_metric import calculate_noise_akld
    if not clean_imgs or len(clean_imgs) != len(noisy_imgs):
        raise ValueError(f'calibration needs matching clean and noisy images, got {len(clean_imgs)} and '
                         f'{len(noisy_imgs)}')
    levels = [float(np.std(y / 255.0 - x / 255.0)) for x, y in zip(clean_imgs, noisy_imgs)]
    scores, rms = {}, {}
    for t in grid:
        generated = synthesize(net, clean_imgs, levels, seed, float(t), residual=residual, device=device)
        scores[float(t)] = float(np.mean([calculate_noise_akld(g, y, x)
                                          for g, y, x in zip(generated, noisy_imgs, clean_imgs)]))
        rms[float(t)] = noise_rms(clean_imgs, generated)
    best = min(scores, key=scores.get)
    return best, {'criterion': 'akld', 'akld': scores, 'akld_at_fit': scores[best],
                  'target_std_8bit': noise_rms(clean_imgs, noisy_imgs) * 255, 'reached_std_8bit': rms[best] * 255}


def calibrate_temperature(net, calibrate, residual, seed, device):
    """``--temperature auto``: fit it on the real pairs ``calibrate = (CLEAN, NOISY)`` (folders or LMDBs matched by
    name); returns (value, facts)."""
    import os

    from senm_plugin.data.image_set import read_pairs
    clean, noisy = read_pairs(calibrate[0], calibrate[1], '--calibrate')
    temperature, facts = fit_temperature(net, clean, noisy, residual or False, seed, device)
    facts.update(pairs=len(clean), clean=os.path.abspath(calibrate[0]), noisy=os.path.abspath(calibrate[1]),
                 temperature=temperature)
    print(f'--temperature auto: {temperature:g}, the lowest AKLD ({facts["akld_at_fit"]:.4f}) on {len(clean)} pairs '
          f'(noise std {facts["reached_std_8bit"]:.2f}, real {facts["target_std_8bit"]:.2f})', flush=True)
    return temperature, facts

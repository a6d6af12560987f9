"""Degradation levels: the SIDD prior, the ``--levels`` spec, estimates of real noisy images (by the noise-level
network or a high-pass estimate) and the per-image plan. A level is the noise std in [0, 1] image units (the
reference's sqrt(shot + read) for SIDD, std(y - x) for a pair)."""
import math
import os

import numpy as np
import torch

from senm_plugin.data.image_set import ImageSet, read_pairs, shape_batches
from senm_plugin.errors import GenerateError
from senm_plugin.noise.model import bgr8_to_tensor, level_net_options, load_level_net
from senm_plugin.noise.seeds import STREAM_LEVEL, STREAM_PICK, image_seed

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


def parse_levels(spec):
    """``sidd-prior`` | ``fixed:<level>`` | ``estimate:<noisy folder or LMDB>`` -> (mode, argument)."""
    spec = str(spec).strip()
    if spec == 'sidd-prior':
        return 'sidd-prior', None
    mode, _, arg = spec.partition(':')
    if mode == 'fixed':
        try:
            value = float(arg)
        except ValueError:
            value = float('nan')
        if not math.isfinite(value) or value < 0:
            raise GenerateError(f'--levels {spec}: fixed needs a finite level >= 0 (in [0, 1] image units), '
                                'e.g. fixed:0.03')
        if value > 1:
            raise GenerateError(f'--levels {spec}: levels are noise stds in [0, 1] image units (fixed:0.03 is about '
                                f'7.7 8-bit levels); for {value:g} 8-bit levels use fixed:{value / 255:.4g}')
        return 'fixed', value
    if mode == 'estimate' and arg:
        return 'estimate', arg
    raise GenerateError(f'--levels {spec!r}: use sidd-prior, fixed:<level> (e.g. fixed:0.03) or '
                        'estimate:<folder or LMDB of real noisy images>')


@torch.no_grad()
def estimate_levels(level_net, images, batch_size=8, device='cpu'):
    """The noise-level network's estimate (>= 0) for every image of an ImageSet (whole images, batched by size)."""
    est = np.zeros(len(images))
    for batch in shape_batches(images.shapes, range(len(images)), batch_size):
        x = bgr8_to_tensor([images.read(i) for i in batch], device)
        est[batch] = level_net(x).reshape(-1).double().cpu().numpy()
    if (est < 0).any():
        print(f'basicsr generate: warning: the noise-level network predicted a negative level for '
              f'{int((est < 0).sum())} of {len(est)} images of {images.path}; they count as 0')
    return np.clip(est, 0, None)


def network_levels(level_path, source, network_le, network_g, batch_size=8, device='cpu', param_key='params'):
    """The noise-level network's estimates for the real noisy images of ``source`` (a folder or an LMDB)."""
    real = ImageSet(source, '--levels estimate')
    level_net = load_level_net(level_path, level_net_options(network_le, network_g), device, param_key)
    estimates = estimate_levels(level_net, real, int(batch_size), device)
    real.close()
    return estimates


def highpass_levels(calibrate, source):
    """``--level-estimator highpass``: levels of the real noisy images ``source`` from the high-pass estimate, scaled
    on the ``--calibrate`` pairs (``senm_plugin.noise.level_estimate``); returns (levels in [0, 1] units, scale)."""
    from senm_plugin.noise.level_estimate import fit_scale, highpass_sigma
    if not calibrate or len(calibrate) != 2:
        raise GenerateError('--level-estimator highpass needs --calibrate CLEAN NOISY (real pairs to scale it on)')
    pairs = read_pairs(calibrate[0], calibrate[1], '--calibrate')
    real = ImageSet(source, '--levels estimate')
    try:
        scale = fit_scale(*pairs)
        levels = np.array([scale * highpass_sigma(real.read(i)) / 255.0 for i in range(len(real))])
    except ValueError as err:
        raise GenerateError(f'--level-estimator highpass: {err}') from err
    real.close()
    print(f'--level-estimator highpass: scale {scale:.3g} fitted on the --calibrate pairs; levels of {len(levels)} '
          f'images {levels.min() * 255:.2f}-{levels.max() * 255:.2f} (8-bit)', flush=True)
    return levels, scale


def real_levels(source, estimator, find_model, calibrate, network_le, network_g, batch_size, device, param_key):
    """The levels of the real noisy images of ``source`` (``--levels estimate:<source>``) by ``estimator``:
    ``network`` (the noise-level network at ``find_model()``) or ``highpass``; returns (estimates, facts) where the
    facts say how they were made (for a manifest)."""
    from senm_plugin.fileutil import file_sha256
    if estimator == 'highpass':
        estimates, scale = highpass_levels(calibrate, source)
        return estimates, {'level_estimator': 'highpass', 'level_scale': scale}
    if estimator != 'network':
        raise GenerateError(f'--level-estimator {estimator!r}: use network or highpass')
    level_path = find_model()
    estimates = network_levels(level_path, source, network_le, network_g, batch_size, device, param_key)
    return estimates, {'level_model': os.path.abspath(level_path), 'level_model_sha256': file_sha256(level_path)}


def plan_levels(mode, arg, num, seed, estimates=None, pick='random'):
    """One level per image: fixed; drawn from the SIDD prior; or taken from real images' estimates.

    With estimates, ``pick='random'`` gives image i the estimate of a real image drawn uniformly (fixed by
    (seed, i)), so the synthetic levels follow the real set's level distribution; ``pick='mean'`` gives every image
    the mean estimate.
    """
    if mode == 'fixed':
        return np.full(num, float(arg))
    if mode == 'sidd-prior':
        return np.array([sample_sidd_levels(1, np.random.default_rng(image_seed(seed, i, STREAM_LEVEL)))[0]
                         for i in range(num)])
    if mode == 'estimate':
        estimates = np.asarray(estimates, dtype=np.float64)
        if pick == 'mean':
            return np.full(num, float(estimates.mean()))
        if pick != 'random':
            raise GenerateError(f'--level-pick {pick!r}: use random or mean')
        return np.array([estimates[np.random.default_rng(image_seed(seed, i, STREAM_PICK)).integers(len(estimates))]
                         for i in range(num)])
    raise GenerateError(f'unknown level mode {mode!r}')


def paired_levels(clean_imgs, real_imgs):
    """Each pair's degradation level std(y - x) in [0, 1] units (the reference's level of a paired image)."""
    return np.array([float(np.std(y / 255. - x / 255., ddof=1)) for x, y in zip(clean_imgs, real_imgs)])

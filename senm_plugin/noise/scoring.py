"""Scores of generated noise against real noise, next to the classic baselines fitted to the same pairs: KLD
(SeNM-VAE's ``compute_kl.py``), AKLD (DANet), FID (when the Inception weights are on this machine), the noise std and
the worst colour cast, plus the noise-level curves and histograms the report plots."""
import math

import numpy as np

from senm_plugin.errors import EvaluateError
from senm_plugin.metrics.noise_metric import calculate_noise_akld, calculate_noise_kld
from senm_plugin.metrics.noise_stats import noise_histogram, noise_level_curve
from senm_plugin.noise.baselines import GaussianNoise, baseline_noisy, fit_gaussian, fit_poisson_gaussian
from senm_plugin.noise.levels import paired_levels
from senm_plugin.noise.seeds import STREAM_GAUSSIAN, STREAM_POISSON_GAUSSIAN

LABELS = {'gaussian': 'Gaussian (fitted)', 'poisson_gaussian': 'Poisson-Gaussian (fitted)',
          'gaussian_per_image': 'Gaussian (per-image sigma)'}


def _unit(img):
    return np.asarray(img, dtype=np.float64) / 255.


def check_matched(clean_imgs, real_imgs, generated_imgs, names=None):
    """Raise EvaluateError unless the three image lists match element for element; returns the image names."""
    n = len(clean_imgs)
    if n == 0:
        raise EvaluateError('no images to evaluate')
    if not len(real_imgs) == len(generated_imgs) == n:
        raise EvaluateError(f'{n} clean, {len(real_imgs)} real and {len(generated_imgs)} generated images')
    names = list(names) if names is not None else [f'{i:04d}' for i in range(n)]
    for name, x, y, g in zip(names, clean_imgs, real_imgs, generated_imgs):
        if not x.shape == y.shape == g.shape:
            raise EvaluateError(f'{name}: clean {x.shape}, real {y.shape} and generated {g.shape} differ in size')
    return names


def baseline_methods(clean_imgs, real_imgs, seed, log=print):
    """Noisy images of the fitted baselines (Gaussian, Poisson-Gaussian, and Gaussian with each pair's own sigma
    std(y - x): the information a model sampled at each pair's level is given); returns (methods, fitted)."""
    clean_f, real_f = [_unit(x) for x in clean_imgs], [_unit(y) for y in real_imgs]
    methods, fitted = {}, {}
    gauss = fit_gaussian(clean_f, real_f)
    fitted['gaussian'] = {'sigma': gauss.sigma, 'sigma_8bit': gauss.sigma * 255}
    methods['gaussian'] = baseline_noisy(gauss, clean_imgs, seed, STREAM_GAUSSIAN)
    try:
        pg = fit_poisson_gaussian(clean_f, real_f)
        fitted['poisson_gaussian'] = {'a': pg.a, 'b': pg.b}
        methods['poisson_gaussian'] = baseline_noisy(pg, clean_imgs, seed, STREAM_POISSON_GAUSSIAN)
    except ValueError as err:
        fitted['poisson_gaussian'] = {'skipped': str(err)}
        log(f'Poisson-Gaussian baseline skipped: {err}')
    sigmas = paired_levels(clean_imgs, real_imgs)
    fitted['gaussian_per_image'] = {'sigma_8bit': [float(s) * 255 for s in sigmas]}
    methods['gaussian_per_image'] = baseline_noisy([GaussianNoise(float(s)) for s in sigmas], clean_imgs, seed,
                                                   STREAM_GAUSSIAN)
    return methods, fitted


def method_metrics(methods, labels, clean_imgs, real_imgs, names):
    """KLD, AKLD, noise std and colour shift of every method's noisy images; returns (metrics, per-image scores)."""
    clean_f = [_unit(x) for x in clean_imgs]
    per_image = {name: {} for name in names}
    metrics = {}
    for key, imgs in methods.items():
        kld = [calculate_noise_kld(g, y) for g, y in zip(imgs, real_imgs)]
        akld = [calculate_noise_akld(g, y, x) for g, y, x in zip(imgs, real_imgs, clean_imgs)]
        noise_std = float(np.sqrt(np.mean([np.mean((_unit(g) - x)**2) for g, x in zip(imgs, clean_f)])))
        metrics[key] = {'label': labels[key], 'kld': _mean(kld), 'akld': _mean(akld), 'fid': None,
                        'noise_std_8bit': noise_std * 255, 'colour_shift_8bit': colour_shift(imgs, clean_imgs)}
        for name, k, a in zip(names, kld, akld):
            per_image[name][key] = {'kld': k, 'akld': a}
    return metrics, per_image


def score_noise(clean_imgs, real_imgs, generated_imgs, names=None, label='SeNM-VAE', fid_weights=None, seed=0,
                baselines=True, fid_feature_extractor=None, device='cpu', settings=None, log=print):
    """Score generated noisy images against real ones (and the fitted baselines when ``baselines``).

    Returns ``(report, methods, curves, hists)``: the report dict (what ``report.json`` holds, less the pictures),
    every method's noisy images, and the noise-level curves and histograms of real and generated noise.
    """
    names = check_matched(clean_imgs, real_imgs, generated_imgs, names)
    methods, fitted = {'generated': generated_imgs}, {}
    labels = {'generated': label, **LABELS}
    if baselines:
        more, fitted = baseline_methods(clean_imgs, real_imgs, seed, log)
        methods.update(more)
    metrics, per_image = method_metrics(methods, labels, clean_imgs, real_imgs, names)
    clean_f, real_f = [_unit(x) for x in clean_imgs], [_unit(y) for y in real_imgs]
    real_std = float(np.sqrt(np.mean([np.mean((y - x)**2) for y, x in zip(real_f, clean_f)])))
    fid_message = _add_fid(metrics, methods, real_imgs, fid_weights, fid_feature_extractor, device)
    log(fid_message)
    curves, hists = _noise_statistics(clean_f, real_f, methods)
    ranked = sorted((k for k in metrics if math.isfinite(metrics[k]['kld'])), key=lambda k: metrics[k]['kld'])
    report = {
        'num_images': len(names),
        'settings': settings or {},
        'metrics': metrics,
        'closest_by_kld': ranked[0] if ranked else None,
        'real_noise_std_8bit': real_std * 255,
        'real_colour_shift_8bit': colour_shift(real_imgs, clean_imgs),
        'baselines': fitted,
        'fid': fid_message,
        'noise_level_curves': {k: {'intensity': v[0], 'std': v[1]} for k, v in curves.items()},
        'per_image': per_image,
    }
    return report, methods, curves, hists


def colour_shift(noisy_imgs, clean_imgs):
    """Colour cast in 8-bit levels: the largest |mean of noisy - clean| of one channel of one image (0 for noise of
    zero mean in every channel; the learned noise must keep it under 2)."""
    return float(max(np.abs((y.astype(np.float64) - x).reshape(-1, x.shape[-1]).mean(0)).max()
                     for y, x in zip(noisy_imgs, clean_imgs)))


def _mean(values):
    return float(np.mean(values)) if len(values) else float('nan')


def _add_fid(metrics, methods, real_imgs, weights, extractor, device):
    """Fill metrics[k]['fid']; returns a one-line message saying what was done or why FID was skipped."""
    from senm_plugin.metrics.fid import FIDWeightsNotFoundError, frechet_distance_from_features, load_inception
    if len(real_imgs) < 2:
        return 'FID skipped: it needs at least 2 images per set'
    if extractor is None:
        try:
            extractor = load_inception(weights, device)
        except FIDWeightsNotFoundError as err:
            return f'FID skipped: {err}'
    real_feat = _fid_features(real_imgs, extractor, device)
    for key, imgs in methods.items():
        metrics[key]['fid'] = frechet_distance_from_features(_fid_features(imgs, extractor, device), real_feat)
    return f'FID computed on {len(real_imgs)} images per set (few images make FID biased upwards)'


def _fid_features(images, extractor, device):
    from senm_plugin.metrics.fid import extract_features
    same = len({img.shape for img in images}) == 1
    return extract_features(images, extractor, batch_size=8 if same else 1, device=device)


def _noise_statistics(clean_f, real_f, methods):
    """Noise-level curves and histograms (8-bit units) of the real noise and of every method's noise."""
    sets = {'real': real_f}
    sets.update({k: [_unit(g) for g in imgs] for k, imgs in methods.items()})
    real_noise = np.concatenate([(y - x).ravel() for y, x in zip(real_f, clean_f)]) * 255
    # bins of an odd whole number of levels, centred on whole values: the noise of 8-bit images is integer
    r = math.ceil(max(float(np.percentile(np.abs(real_noise), 99.9)), 1.0) * 1.5)
    width = 1 + 2 * (r // 60)
    half = width * math.ceil(r / width) + width / 2
    curves, hists = {}, {}
    for key, noisy in sets.items():
        centers, std, _ = noise_level_curve(clean_f, noisy, num_bins=16, min_count=32)
        curves[key] = (centers * 255, std * 255)
        noise = [(g - x) * 255 for g, x in zip(noisy, clean_f)]
        density, edges = noise_histogram(noise, bins=int(round(2 * half / width)), value_range=(-half, half))
        hists[key] = ((edges[:-1] + edges[1:]) / 2, density)
    return curves, hists

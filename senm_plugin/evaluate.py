"""``basicsr evaluate noise``: how close a noise model's noise is to real noise, next to two classic baselines.

Given real pairs (clean x, real noisy y) and generated noisy images y' for the same x (from a SeNM-VAE checkpoint or
a folder/LMDB), the report scores y' and the noisy images of a Gaussian and a Poisson-Gaussian noise model fitted to
the same pairs with the same metrics: KLD (SeNM-VAE's ``compute_kl.py``), AKLD (DANet) and FID (when the Inception
weights are on this machine). It writes ``report.json``, ``report.md`` and three pictures: ``grid.png`` (clean |
real noisy | generated noisy | real noise | generated noise), ``histogram.png`` (noise histograms) and
``noise_level.png`` (noise standard deviation against clean intensity).
"""
import argparse
import json
import math
import os
import sys
from os import path as osp

import numpy as np

from senm_plugin.data.fileutil import check_writable_dir
from senm_plugin.data.image_io import ImageError
from senm_plugin.data.lmdb_io import write_json_atomic
from senm_plugin.generate import (MANIFEST, STREAM_LATENT, GenerateError, ImageSet, check_sampling_options,
                                  find_level_model, load_senmvae, network_levels, parse_levels, plan_levels,
                                  resolve_device, synthesize)
from senm_plugin.metrics.noise_metric import calculate_noise_akld, calculate_noise_kld
from senm_plugin.metrics.noise_stats import (GaussianNoise, fit_gaussian, fit_poisson_gaussian, noise_histogram,
                                             noise_level_curve)
from senm_plugin.noise_pictures import NOISE_GAIN, plot_lines, write_grid

# random streams of the baselines' noise, distinct from generate's streams of the same (seed, index)
STREAM_GAUSSIAN, STREAM_POISSON_GAUSSIAN = STREAM_LATENT + 1, STREAM_LATENT + 2


class EvaluateError(RuntimeError):
    """An evaluation that cannot run; the message names the option or file at fault."""


def _unit(img):
    return np.asarray(img, dtype=np.float64) / 255.


def _quantise(x):
    return np.clip(np.round(np.asarray(x) * 255.), 0, 255).astype(np.uint8)


def paired_levels(clean_imgs, real_imgs):
    """Each pair's degradation level std(y - x) in [0, 1] units (the reference's level of a paired image)."""
    return np.array([float(np.std(_unit(y) - _unit(x), ddof=1)) for x, y in zip(clean_imgs, real_imgs)])


def baseline_noisy(model, clean_imgs, seed, stream):
    """uint8 noisy images of a fitted baseline noise model (``sample`` in [0, 1] units; one model, or a list of one
    per image), one seed per image."""
    from senm_plugin.generate import image_seed
    models = model if isinstance(model, (list, tuple)) else [model] * len(clean_imgs)
    return [_quantise(m.sample(_unit(x), seed=image_seed(seed, i, stream), clip=(0., 1.)))
            for i, (m, x) in enumerate(zip(models, clean_imgs))]


def _fid_features(images, extractor, device):
    from senm_plugin.metrics.fid import extract_features
    same = len({img.shape for img in images}) == 1
    return extract_features(images, extractor, batch_size=8 if same else 1, device=device)


def _mean(values):
    return float(np.mean(values)) if len(values) else float('nan')


def evaluate_noise(clean_imgs,
                   real_imgs,
                   generated_imgs,
                   out_dir,
                   names=None,
                   label='SeNM-VAE',
                   fid_weights=None,
                   seed=0,
                   num_grid=4,
                   baselines=True,
                   fid_feature_extractor=None,
                   device='cpu',
                   settings=None,
                   verbose=True):
    """Score generated noisy images against real ones (and the fitted baselines); write the report into ``out_dir``.

    Args:
        clean_imgs, real_imgs, generated_imgs (list[ndarray]): uint8 HWC BGR images, matching element for element.
        names (list[str] | None): image names for the per-image table.
        label (str): name of the generated method in the report.
        fid_weights (str | None): local FID Inception weights (default search: ``metrics.fid``); FID is skipped with
            a message when none are found. ``fid_feature_extractor`` replaces the Inception network (tests).
        seed (int): seed of the baselines' noise.
        baselines (bool): also score Gaussian and Poisson-Gaussian noise fitted to the pairs, and Gaussian noise
            with each pair's own sigma std(y - x): the information a model sampled at each pair's level is given.

    Returns:
        dict: the report (also in ``report.json``).
    """
    n = len(clean_imgs)
    if n == 0:
        raise EvaluateError('no images to evaluate')
    if not len(real_imgs) == len(generated_imgs) == n:
        raise EvaluateError(f'{n} clean, {len(real_imgs)} real and {len(generated_imgs)} generated images')
    names = list(names) if names is not None else [f'{i:04d}' for i in range(n)]
    for name, x, y, g in zip(names, clean_imgs, real_imgs, generated_imgs):
        if not x.shape == y.shape == g.shape:
            raise EvaluateError(f'{name}: clean {x.shape}, real {y.shape} and generated {g.shape} differ in size')
    os.makedirs(out_dir, exist_ok=True)
    log = print if verbose else (lambda *a, **k: None)

    clean_f, real_f = [_unit(x) for x in clean_imgs], [_unit(y) for y in real_imgs]
    methods = {'generated': generated_imgs}
    labels = {'generated': label, 'gaussian': 'Gaussian (fitted)', 'poisson_gaussian': 'Poisson-Gaussian (fitted)',
              'gaussian_per_image': 'Gaussian (per-image sigma)'}
    fitted = {}
    if baselines:
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
    real_std = float(np.sqrt(np.mean([np.mean((y - x)**2) for y, x in zip(real_f, clean_f)])))
    real_shift = colour_shift(real_imgs, clean_imgs)

    fid_message = _add_fid(metrics, methods, real_imgs, fid_weights, fid_feature_extractor, device)
    log(fid_message)

    curves, hists = _noise_statistics(clean_f, real_f, methods)
    pictures = {'grid': 'grid.png', 'histogram': 'histogram.png', 'noise_level': 'noise_level.png'}
    write_grid(osp.join(out_dir, pictures['grid']), clean_imgs[:num_grid], real_imgs[:num_grid],
               generated_imgs[:num_grid], names[:num_grid], label)
    plot_lines(osp.join(out_dir, pictures['histogram']), hists, labels, 'Noise histograms (all pixels and channels)',
               'noise (8-bit levels)', 'density', log_y=True)
    plot_lines(osp.join(out_dir, pictures['noise_level']), curves, labels, 'Noise level against intensity',
               'clean intensity (8-bit)', 'noise std (8-bit levels)')

    ranked = sorted((k for k in metrics if math.isfinite(metrics[k]['kld'])), key=lambda k: metrics[k]['kld'])
    report = {
        'num_images': n,
        'settings': settings or {},
        'metrics': metrics,
        'closest_by_kld': ranked[0] if ranked else None,
        'real_noise_std_8bit': real_std * 255,
        'real_colour_shift_8bit': real_shift,
        'baselines': fitted,
        'fid': fid_message,
        'pictures': pictures,
        'noise_level_curves': {k: {'intensity': v[0], 'std': v[1]} for k, v in curves.items()},
        'per_image': per_image,
    }
    write_json_atomic(osp.join(out_dir, 'report.json'), _jsonable(report))
    with open(osp.join(out_dir, 'report.md'), 'w') as f:
        f.write(markdown_report(report))
    log(summary_table(report))
    log(f'report: {osp.join(out_dir, "report.md")}')
    return report


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


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _cell(text):
    """``text`` safe inside a Markdown table cell (a ``|`` would start a new column)."""
    return str(text).replace('|', '\\|').replace('\n', ' ')


def _fmt(value, digits=4):
    return '-' if value is None or not math.isfinite(value) else f'{value:.{digits}f}'


def colour_shift(noisy_imgs, clean_imgs):
    """Colour cast in 8-bit levels: the largest |mean of noisy - clean| of one channel of one image (0 for noise of
    zero mean in every channel; the learned noise must keep it under 2)."""
    return float(max(np.abs((y.astype(np.float64) - x).reshape(-1, x.shape[-1]).mean(0)).max()
                     for y, x in zip(noisy_imgs, clean_imgs)))


def summary_table(report):
    """The metrics as a Markdown table (lower is better for the scores; the std should match the real one)."""
    lines = ['| noise model | KLD | AKLD | FID | noise std (8-bit) | worst channel shift (8-bit) |',
             '|---|---|---|---|---|---|']
    for m in report['metrics'].values():
        lines.append(f'| {_cell(m["label"])} | {_fmt(m["kld"])} | {_fmt(m["akld"])} | {_fmt(m["fid"], 2)} | '
                     f'{_fmt(m["noise_std_8bit"], 2)} | {_fmt(m.get("colour_shift_8bit"), 2)} |')
    lines.append(f'| real noise | 0 | 0 | 0 | {_fmt(report["real_noise_std_8bit"], 2)} | '
                 f'{_fmt(report.get("real_colour_shift_8bit"), 2)} |')
    return '\n'.join(lines)


def markdown_report(report):
    """The short Markdown report: the table, what the baselines are, and the pictures."""
    closest = report['closest_by_kld']
    lines = [
        '# Noise evaluation', '',
        f'{report["num_images"]} clean/real-noisy pairs. Lower is better for every metric: KLD between the grey-level '
        'histograms of generated and real noisy images (SeNM-VAE `compute_kl.py`), AKLD between local Gaussian fits '
        'of the noise (DANet), FID between the noisy image sets.', '',
        summary_table(report), '',
    ]
    if closest:
        lines += [f'Closest to the real noise by KLD: **{report["metrics"][closest]["label"]}**.', '']
    fitted = report['baselines']
    if 'gaussian' in fitted:
        lines.append(f'- Gaussian baseline: sigma = {fitted["gaussian"]["sigma_8bit"]:.3f} (8-bit levels), fitted '
                     'to the real pairs (root mean square of y - x).')
    pg = fitted.get('poisson_gaussian', {})
    if 'a' in pg:
        lines.append(f'- Poisson-Gaussian baseline: var(y - x) = a x + b with a = {pg["a"]:.3g}, b = {pg["b"]:.3g} '
                     '(x in [0, 1]), fitted by least squares over intensity bins.')
    elif 'skipped' in pg:
        lines.append(f'- Poisson-Gaussian baseline skipped: {pg["skipped"]}')
    lines += [f'- {report["fid"]}', '',
              '## Pictures', '',
              f'Clean | real noisy | generated noisy | real noise | generated noise (noise shown as 128 + '
              f'{NOISE_GAIN} x noise):', '', f'![grid]({report["pictures"]["grid"]})', '',
              f'![noise histograms]({report["pictures"]["histogram"]})', '',
              f'![noise level against intensity]({report["pictures"]["noise_level"]})', '']
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------------ data loading
def _generated_root(path):
    """A ``basicsr generate`` output folder stands for its lq images."""
    manifest = osp.join(path, MANIFEST)
    if osp.isdir(path) and osp.isfile(manifest):
        with open(manifest) as f:
            fmt = json.load(f).get('format', 'lmdb')
        return osp.join(path, 'lq.lmdb' if fmt == 'lmdb' else 'lq')  # relative: the folder may have moved
    return path


def load_matched(clean_path, real_path, generated_path=None, max_images=None):
    """Clean, real and (optionally) generated images matched by key; returns (keys, clean, real, generated|None)."""
    sets = {'--clean': ImageSet(clean_path, '--clean'), '--real': ImageSet(real_path, '--real')}
    if generated_path:
        sets['--generated'] = ImageSet(_generated_root(generated_path), '--generated')
    index = {opt: dict(zip(s.keys, range(len(s)))) for opt, s in sets.items()}
    keys = sorted(index['--clean'])
    for opt, idx in index.items():
        missing = [k for k in keys if k not in idx]
        if missing:
            raise EvaluateError(f'{opt} {sets[opt].path} lacks {len(missing)} image(s) of --clean, '
                                f'e.g. {missing[:5]} (images are matched by name)')
    extra = sorted(set(index['--real']) - set(keys))
    if extra:
        raise EvaluateError(f'--real {real_path} holds {len(extra)} image(s) without a clean partner, e.g. {extra[:5]}')
    if max_images:
        keys = keys[:int(max_images)]
    loaded = {opt: [s.read(index[opt][k]) for k in keys] for opt, s in sets.items()}
    for s in sets.values():
        s.close()
    return keys, loaded['--clean'], loaded['--real'], loaded.get('--generated')


# ------------------------------------------------------------------------------------------------------ command line
def _parser():
    p = argparse.ArgumentParser(prog='basicsr evaluate', description='Evaluate a noise model against real pairs.')
    sub = p.add_subparsers(dest='what', required=True)
    n = sub.add_parser('noise', help='KLD / AKLD / FID of generated noise vs real noise, with Gaussian and '
                       'Poisson-Gaussian baselines')
    n.add_argument('--clean', required=True, help='clean images of the real pairs: folder or LMDB')
    n.add_argument('--real', required=True, help='real noisy images (same names as --clean): folder or LMDB')
    src = n.add_mutually_exclusive_group(required=True)
    src.add_argument('--model', help='SeNM-VAE checkpoint: noisy images are generated from --clean')
    src.add_argument('--generated', help='generated noisy images (same names as --clean): folder, LMDB or a '
                     'basicsr generate output folder')
    n.add_argument('--out', required=True, help='report folder')
    n.add_argument('--levels', default='paired',
                   help='--model levels: paired (std of each real pair\'s noise, default, as the reference test) | '
                   'sidd-prior | fixed:<level> | estimate:<noisy folder or LMDB>')
    n.add_argument('--level-model', help='noise-level net for estimate: (default: net_le_* beside --model)')
    n.add_argument('--level-pick', choices=('random', 'mean'), default='random')
    n.add_argument('--temperature', type=float, default=1.0)
    n.add_argument('--normalize', action='store_true')
    n.add_argument('--residual', choices=('clean', 'mean', 'level'), help='as basicsr generate --residual')
    n.add_argument('--network-opt', metavar='JSON|YML',
                   help='SeNMVAE options: JSON or an option file whose network_g is used')
    n.add_argument('--level-network-opt', metavar='JSON|YML',
                   help='NoiseLevelNet options: JSON or option file (default: as basicsr generate)')
    n.add_argument('--param-key', default='params')
    n.add_argument('--batch-size', type=int, default=8)
    n.add_argument('--device', help='cpu | cuda (default: cuda when available)')
    n.add_argument('--fid-weights', help='FID Inception weights file (never downloaded; FID is skipped without it)')
    n.add_argument('--seed', type=int, default=0, help='seed of generated and baseline noise')
    n.add_argument('--num-grid', type=int, default=4, help='images in grid.png')
    n.add_argument('--max-images', type=int, help='evaluate only the first N pairs (sorted by name)')
    n.add_argument('--label', default='SeNM-VAE', help='name of the evaluated model in the report')
    n.add_argument('--no-baselines', action='store_true', help='skip the Gaussian and Poisson-Gaussian baselines')
    return p


def run_noise(args):
    """``basicsr evaluate noise`` with parsed arguments; returns the report."""
    check_sampling_options(args.batch_size, args.seed, args.temperature, args.residual)
    problem = check_writable_dir(args.out, '--out')
    if problem:
        raise EvaluateError(problem)
    if args.max_images is not None and args.max_images < 1:
        raise EvaluateError(f'--max-images must be >= 1, got {args.max_images}')
    if args.num_grid < 0:
        raise EvaluateError(f'--num-grid must be >= 0, got {args.num_grid}')
    keys, clean, real, generated = load_matched(args.clean, args.real, args.generated, args.max_images)
    settings = {k: v for k, v in vars(args).items() if k != 'what'}
    device = resolve_device(args.device)
    if generated is None:
        net = load_senmvae(args.model, args.network_opt, device, args.param_key)
        if args.levels == 'paired':
            levels = paired_levels(clean, real)
        else:
            mode, arg = parse_levels(args.levels)
            estimates = None
            if mode == 'estimate':
                level_path = find_level_model(args.level_model, args.model, args.levels)
                estimates = network_levels(level_path, arg, args.level_network_opt, args.network_opt, args.batch_size,
                                           device, args.param_key)
            levels = plan_levels(mode, arg, len(clean), args.seed, estimates, args.level_pick)
        settings['levels_used'] = {'mean': float(np.mean(levels)), 'min': float(np.min(levels)),
                                   'max': float(np.max(levels))}
        print(f'generating {len(clean)} noisy images with {args.model} ...', flush=True)
        generated = synthesize(net, clean, levels, args.seed, args.temperature, args.normalize, args.batch_size,
                               device, residual=args.residual or False)
    return evaluate_noise(clean, real, generated, args.out, names=keys, label=args.label, fid_weights=args.fid_weights,
                          seed=args.seed, num_grid=args.num_grid, baselines=not args.no_baselines, device=device,
                          settings=settings)


def main(argv=None):
    """Entry point of ``basicsr evaluate``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        run_noise(args)
    except (EvaluateError, GenerateError, ImageError) as err:
        print(f'basicsr evaluate {args.what}: error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

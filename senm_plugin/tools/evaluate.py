"""``basicsr evaluate noise``: how close a noise model's noise is to real noise, next to two classic baselines.

Given real pairs (clean x, real noisy y) and generated noisy images y' for the same x (from a SeNM-VAE checkpoint or
a folder/LMDB), the report scores y' and the noisy images of a Gaussian and a Poisson-Gaussian noise model fitted to
the same pairs with the same metrics (``senm_plugin.noise.scoring``) and writes ``report.json``, ``report.md`` and
three pictures (``senm_plugin.tools.evaluate_report``).
"""
import argparse
import json
import sys
from os import path as osp

import numpy as np

from senm_plugin.data.image_io import ImageError
from senm_plugin.data.image_set import ImageSet
from senm_plugin.errors import EvaluateError, GenerateError
from senm_plugin.fileutil import check_writable_dir
from senm_plugin.noise.levels import paired_levels, parse_levels, plan_levels, real_levels
from senm_plugin.noise.model import check_sampling_options, find_level_model, load_senmvae, resolve_device, synthesize
from senm_plugin.noise.scoring import score_noise
from senm_plugin.tools.evaluate_report import write_report
from senm_plugin.tools.generate_output import MANIFEST
from senm_plugin.tools.options import parsed_args


def evaluate_noise(clean_imgs, real_imgs, generated_imgs, out_dir, names=None, label='SeNM-VAE', fid_weights=None,
                   seed=0, num_grid=4, baselines=True, fid_feature_extractor=None, device='cpu', settings=None,
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
    log = print if verbose else (lambda *a, **k: None)
    report, _, curves, hists = score_noise(clean_imgs, real_imgs, generated_imgs, names, label, fid_weights, seed,
                                           baselines, fid_feature_extractor, device, settings, log)
    return write_report(report, out_dir, clean_imgs, real_imgs, generated_imgs, curves, hists, num_grid, log)


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


def parser():
    """The command line of ``basicsr evaluate``."""
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


def noise_args(**options):
    """The arguments of ``basicsr evaluate noise``: the command line's defaults with ``options`` (``clean``, ``real``,
    ``out`` and one of ``model`` / ``generated`` required) set."""
    source = '--model' if options.get('model') else '--generated'
    required = ['noise', '--clean', str(options['clean']), '--real', str(options['real']), '--out', str(options['out']),
                source, str(options.get('model') or options['generated'])]
    return parsed_args(parser(), required, options, 'basicsr evaluate noise')


def model_levels(args, clean, real, device):
    """The level of each clean image for ``--model``: each real pair's own (``--levels paired``) or as ``basicsr
    generate`` plans them."""
    if args.levels == 'paired':
        return paired_levels(clean, real)
    mode, arg = parse_levels(args.levels)
    estimates = None
    if mode == 'estimate':
        estimates, _ = real_levels(arg, 'network', lambda: find_level_model(args.level_model, args.model, args.levels),
                                   None, args.level_network_opt, args.network_opt, args.batch_size, device,
                                   args.param_key)
    return plan_levels(mode, arg, len(clean), args.seed, estimates, args.level_pick)


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
        levels = model_levels(args, clean, real, device)
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
    args = parser().parse_args(argv)
    try:
        run_noise(args)
    except (EvaluateError, GenerateError, ImageError) as err:
        print(f'basicsr evaluate {args.what}: error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

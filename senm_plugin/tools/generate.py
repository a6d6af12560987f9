"""``basicsr generate``: clean/noisy training pairs made by a trained SeNM-VAE from clean images.

Each clean image x gets a degradation level and a noisy image y = SeNM-VAE translate(x, level) (z ~ q(z|x),
zn ~ p(zn|z, level), y from the decoder; the reference ``SIDD/main_translate.py``). The output is a paired set that
BasicSR's PairedImageDataset reads as it is: ``<out>/gt.lmdb`` + ``<out>/lq.lmdb`` (``--format lmdb``) or
``<out>/gt/`` + ``<out>/lq/`` PNG folders (``--format png``), plus ``<out>/manifest.json`` (the settings and each
image's key and level).

Determinism and resuming: every random draw of image i (its level, its latents) comes from generators seeded with
(seed, i) only, so the batch size, the grouping of images and an interruption change nothing (on one device type:
CPU and CUDA random streams differ, so the device type is part of the settings). Finished images are
written as PNG files (atomically) into ``<out>/gt`` and ``<out>/lq`` (PNG) or ``<out>/_staging`` (LMDB); a re-run
with the same settings skips the finished ones, and the LMDBs are built from the staged files only once every image
is there. ``manifest.json`` says ``"complete": true`` only at the very end.
"""
import argparse
import os
import sys
from os import path as osp

import yaml

from senm_plugin.data.image_io import ImageError
from senm_plugin.data.image_set import ImageSet, shape_batches
from senm_plugin.data.lmdb_io import remove_path
from senm_plugin.errors import GenerateError
from senm_plugin.fileutil import check_writable_dir, write_json_atomic, write_png_atomic
from senm_plugin.noise.levels import parse_levels
from senm_plugin.noise.model import check_sampling_options, load_senmvae, resolve_device, synthesize_batch
from senm_plugin.noise.seeds import STREAM_LATENT, image_seed
from senm_plugin.shard import Shard
from senm_plugin.tools.generate_output import (MANIFEST, STAGING, finish_output, is_finished, lock_out, output_roots,
                                               prepare_out, start_staging, unlock_out)
from senm_plugin.tools.generate_plan import fingerprint, plan

DEFAULTS = {
    'model': None,
    'input': None,
    'out': None,
    'levels': 'sidd-prior',
    'level_model': None,
    'level_pick': 'random',
    'level_estimator': 'network',
    'temperature': 1.0,
    'normalize': False,
    'residual': False,
    'calibrate': None,
    'batch_size': 8,
    'seed': 0,
    'device': None,
    'format': 'lmdb',
    'network_g': None,
    'network_le': None,
    'param_key': 'params',
    'compress_level': 1,
    'overwrite': False,
}


def check_config(cfg):
    """Raise GenerateError naming the option when ``cfg`` (DEFAULTS' keys) cannot make a generation."""
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise GenerateError(f'unknown option(s) {unknown}; known: {sorted(DEFAULTS)}')
    for key in ('model', 'input', 'out'):
        if not cfg[key]:
            raise GenerateError(f'--{key} is required')
    problem = check_writable_dir(cfg['out'], '--out')
    if problem:
        raise GenerateError(problem)
    if cfg['format'] not in ('lmdb', 'png'):
        raise GenerateError(f'--format {cfg["format"]!r}: use lmdb or png')
    if not 0 <= int(cfg['compress_level']) <= 9:
        raise GenerateError(f'--compress-level must be 0 (fastest) to 9 (smallest), got {cfg["compress_level"]}')
    check_sampling_options(cfg['batch_size'], cfg['seed'], cfg['temperature'], cfg['residual'], allow_auto=True)
    if cfg['temperature'] == 'auto' and (not cfg['calibrate'] or len(cfg['calibrate']) != 2):
        raise GenerateError('--temperature auto needs --calibrate CLEAN NOISY (real pairs to fit it on)')


def run_generate(cfg, progress=True, _stop_after=None):
    """Generate a paired set as ``cfg`` says (the keys of DEFAULTS); returns the manifest dict.

    ``_stop_after`` stops after that many new images without finishing (to test resuming).
    """
    cfg = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    check_config(cfg)
    shard = Shard()  # under torchrun: this rank's share of the images
    held = []  # the output folder's lock, once taken
    try:
        return _generate(cfg, shard, progress, _stop_after, held)
    finally:
        shard.close()
        for lock in held:
            unlock_out(lock)


def _generate(cfg, shard, progress, stop_after, held):
    device = shard.device(resolve_device(cfg['device']))
    mode, arg = parse_levels(cfg['levels'])  # a bad spec stops the run before any file is read
    fmt, out = cfg['format'], cfg['out']
    images = ImageSet(cfg['input'], '--input')
    net = load_senmvae(cfg['model'], cfg['network_g'], device, cfg['param_key'])
    settings, levels = plan(cfg, shard, net, images, device)
    fp = fingerprint(settings, images)
    os.makedirs(out, exist_ok=True)
    if shard.main:
        held.append(lock_out(out))
    inputs = [cfg['input']] + ([arg] if mode == 'estimate' else []) + list(cfg['calibrate'] or [])
    previous = prepare_out(out, fp, fmt, bool(cfg['overwrite']), inputs) if shard.main else None
    gt_root, lq_root, stage = output_roots(out, fmt)
    manifest = {
        'tool': 'basicsr generate',
        'complete': False,
        'fingerprint': fp,
        'settings': settings,
        'format': fmt,
        'dataroot_gt': osp.abspath(gt_root),
        'dataroot_lq': osp.abspath(lq_root),
        'count': len(images),
        'images': [{'key': k, 'name': n, 'index': i, 'level': float(lv), 'size': list(map(int, s))}
                   for i, (k, n, lv, s) in enumerate(zip(images.keys, images.names, levels, images.shapes))],
    }
    if shard.share(bool(previous and previous.get('complete') and is_finished(out, fmt, images.keys, fp))
                   if shard.main else None):
        if shard.main:
            remove_path(osp.join(out, STAGING))
            print(f'basicsr generate: {out} is already complete ({len(images)} pairs)')
        return previous or manifest
    if shard.main:
        write_json_atomic(osp.join(out, MANIFEST), manifest)
        start_staging(stage)
    shard.barrier()
    missing = write_pairs(cfg, shard, net, images, levels, stage, device, progress, stop_after)
    if not shard.main:
        return manifest  # rank 0 checks the whole output, builds the LMDBs and completes the manifest
    if missing:
        print(f'basicsr generate: stopped with {missing} of {len(images)} images left; run again to resume')
        return manifest
    finish_output(out, fmt, manifest, images.keys, images.shapes, fp, cfg['compress_level'])
    print(f'basicsr generate: wrote {len(images)} pairs: gt {gt_root}, lq {lq_root}, '
          f'manifest {osp.join(out, MANIFEST)}')
    return manifest


def write_pairs(cfg, shard, net, images, levels, stage, device, progress, stop_after=None):
    """Synthesize and stage this rank's images not yet done (each pair written atomically, its noisy image last);
    returns how many images of the whole set are still missing (counted on the main rank, after every rank)."""
    stage_gt, stage_lq = osp.join(stage, 'gt'), osp.join(stage, 'lq')
    seed = int(cfg['seed'])

    def done(i):
        key = images.keys[i]
        return osp.isfile(osp.join(stage_gt, key + '.png')) and osp.isfile(osp.join(stage_lq, key + '.png'))

    mine = shard.mine(range(len(images)))
    todo = [i for i in mine if not done(i)]
    if shard.world > 1:
        print(f'basicsr generate: rank {shard.rank} of {shard.world}: {len(todo)} of its {len(mine)} images to do '
              f'({len(images)} in all)', flush=True)
    bar = None
    if progress and shard.main:  # rank 0's share stands for the whole run's progress
        from tqdm import tqdm
        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc='generate', unit='img')
    written = 0
    for batch in shape_batches(images.shapes, todo, int(cfg['batch_size'])):
        if stop_after is not None and written >= stop_after:
            break
        clean = [images.read(i) for i in batch]
        noisy = synthesize_batch(net, clean, levels[batch], [image_seed(seed, i, STREAM_LATENT) for i in batch],
                                 float(cfg['temperature']), bool(cfg['normalize']), device, cfg['residual'] or False,
                                 names=[images.names[i] for i in batch])
        for i, x, y in zip(batch, clean, noisy):
            key = images.keys[i]
            write_png_atomic(osp.join(stage_gt, key + '.png'), x, cfg['compress_level'])
            write_png_atomic(osp.join(stage_lq, key + '.png'), y, cfg['compress_level'])  # written last: marks i done
        written += len(batch)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    images.close()
    shard.barrier()
    return sum(not done(i) for i in range(len(images))) if shard.main else 0


# ------------------------------------------------------------------------------------------------------ command line
def parser():
    """The command line of ``basicsr generate``."""
    p = argparse.ArgumentParser(
        prog='basicsr generate',
        description='Make clean/noisy training pairs from clean images with a trained SeNM-VAE. Every option can '
        'also come from a YAML file (-opt), under the same name with underscores; flags override it.')
    p.add_argument('-opt', '--opt', dest='opt_file', help='YAML option file with the keys below')
    p.add_argument('--model', help='SeNM-VAE checkpoint: BasicSR net_g_<iter>.pth or a bare state dict')
    p.add_argument('--input', help='clean images: folder or BasicSR LMDB')
    p.add_argument('--out', help='output folder (gt/lq LMDBs or PNG folders, manifest.json)')
    p.add_argument('--levels', help='sidd-prior (default) | fixed:<level> | estimate:<real noisy folder or LMDB>')
    p.add_argument('--level-model', help='noise-level net checkpoint for estimate: (default: net_le_<iter>.pth '
                   'beside --model)')
    p.add_argument('--level-estimator', choices=('network', 'highpass'),
                   help='estimate: levels from the noise-level network saved with the model (default, as the paper) '
                   'or from a high-pass estimate scaled on the --calibrate pairs (follows levels beyond the pairs\')')
    p.add_argument('--level-pick', choices=('random', 'mean'),
                   help='estimate: give each image a random real image\'s level (default) or the mean level')
    p.add_argument('--temperature', type=_temperature,
                   help='scales the degradation latents (default 1.0); auto: the temperature whose noise is closest '
                   'to the noise of the --calibrate pairs (lowest AKLD)')
    p.add_argument('--calibrate', nargs=2, metavar=('CLEAN', 'NOISY'),
                   help='real pairs (folders or LMDBs, matched by name) for --temperature auto, e.g. the paired domain')
    p.add_argument('--normalize', action='store_true', default=None,
                   help='shift each generated channel to the clean image\'s mean')
    p.add_argument('--residual', choices=('clean', 'mean', 'level'),
                   help='add only rendered noise to the clean image: the noisy rendering of z minus its clean one '
                   '(clean) or minus the rendering at the mean degradation latents (mean); level: as mean, scaled to '
                   'std = the image\'s noise level; default: off, as the paper')
    p.add_argument('--batch-size', type=int, help='images per forward pass (default 8)')
    p.add_argument('--seed', type=int, help='seed of levels and latents (default 0)')
    p.add_argument('--device', help='cpu | cuda | cuda:N (default: cuda when available)')
    p.add_argument('--format', choices=('lmdb', 'png'), help='output format (default lmdb)')
    p.add_argument('--network-opt', dest='network_g', metavar='JSON|YML',
                   help='SeNMVAE options: JSON (e.g. \'{"num_feat": 32}\') or an option file whose network_g is used '
                   '(default: the paper configuration)')
    p.add_argument('--level-network-opt', dest='network_le', metavar='JSON|YML',
                   help='NoiseLevelNet options: JSON or an option file whose network_le is used (default: the '
                   'network_le of the --network-opt option file, else the paper configuration)')
    p.add_argument('--param-key', help='checkpoint entry holding the weights (default params)')
    p.add_argument('--compress-level', type=int, help='PNG compression level 0-9 (default 1, as BasicSR)')
    p.add_argument('--overwrite', action='store_true', default=None,
                   help='replace an output made with other settings')
    return p


def _temperature(value):
    return 'auto' if value == 'auto' else float(value)


def load_option_file(path):
    """The options of a YAML file for ``basicsr generate`` (dashes in keys read as underscores)."""
    if not osp.isfile(path):
        raise GenerateError(f'-opt: option file {path} not found')
    with open(path) as f:
        loaded = yaml.safe_load(f) or {}
    if not isinstance(loaded, dict):
        raise GenerateError(f'-opt: {path} does not hold a mapping of options')
    return {str(k).replace('-', '_'): v for k, v in loaded.items()}


def main(argv=None):
    """Entry point of ``basicsr generate``; returns the exit code."""
    args = vars(parser().parse_args(argv))
    opt_file = args.pop('opt_file')
    try:
        cfg = load_option_file(opt_file) if opt_file else {}
        cfg.update({k: v for k, v in args.items() if v is not None})
        run_generate(cfg)
    except (GenerateError, ImageError) as err:
        print(f'basicsr generate: error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

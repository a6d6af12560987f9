"""Fidelity of the learned noise on real camera pairs: SeNM-VAE against fitted Gaussian / Poisson-Gaussian noise,
and a denoiser trained on real pairs alone, on fitted-Gaussian + real pairs, on SeNM-VAE synthetic + real pairs and,
as the yardstick, on the clean-only tiles with their true noisy partners + real pairs.

    python benchmarks/bench_fidelity.py --pairs DIR [--out results/fidelity] [--seed 0]

DIR holds real noisy/clean pairs matched by name: either ``DIR/gt`` + ``DIR/lq``, or one folder with a clean and a
noisy suffix (``--clean-suffix _mean --noisy-suffix _real``, the defaults, fit the CC set of Nam et al., e.g. the
``Real_ccnoise_denoised_part`` folder of csjunxu/MCWNNM-ICCV2017). Every scene (pair) takes one role only, fixed by
``--seed`` and ``--split`` (``senm_plugin.data.scene_split``; ``stratified``, the default, holds out one scene per
condition and shows each held-out condition in the noisy-only role, as in the paper's setting; ``random`` shuffles
all scenes): ``--paired-scenes`` give the paired domain (``--paired-tiles`` of
their tiles), ``--source-scenes`` their clean tiles only, ``--target-scenes`` their noisy tiles only, and
``--test-scenes`` are held out for every score. Then the demo's pipeline runs on those tiles (``basicsr prepare
folders``, SeNM-VAE with ``options/train/senm_cpu.yml`` (1,500 iterations), ``basicsr generate --residual level
--temperature auto``, the four ScaoedNet trainings, ``basicsr evaluate noise``) and one table is printed and written
to ``OUT/summary.md``. About 20 minutes on 2 cores.
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np

from senm_plugin.tools import demo
from senm_plugin.tools.demo_report import write_summary
from senm_plugin.tools.demo_train import cpu_cores
from senm_plugin.data.image_io import list_images
from senm_plugin.data.scene_split import SPLITS, split_scenes, tiles

# generate options on real camera pairs: noise at the pairs' strength with the model's structure (RESULTS.md: on the
# CC set `level` beats `mean` on KLD and AKLD; the demo's simulated camera prefers `mean`)
REAL_CAMERA_SAMPLING = {'residual': 'level', 'temperature': 'auto'}


def find_pairs(root, clean_suffix, noisy_suffix):
    """{scene: (clean path, noisy path)} of the pairs under ``root`` (see the module docstring)."""
    if os.path.isdir(os.path.join(root, 'gt')) and os.path.isdir(os.path.join(root, 'lq')):
        gt, lq = os.path.join(root, 'gt'), os.path.join(root, 'lq')
        noisy = {os.path.splitext(n)[0]: os.path.join(lq, n) for n in list_images(lq, '--pairs')}
        pairs = {os.path.splitext(n)[0]: (os.path.join(gt, n), noisy.get(os.path.splitext(n)[0]))
                 for n in list_images(gt, '--pairs')}
    else:
        stems = {os.path.splitext(n)[0]: os.path.join(root, n) for n in list_images(root, '--pairs')}
        pairs = {s[:-len(clean_suffix)]: (p, stems.get(s[:-len(clean_suffix)] + noisy_suffix))
                 for s, p in stems.items() if s.endswith(clean_suffix)}
    missing = sorted(k for k, (_, y) in pairs.items() if y is None)
    if missing:
        raise SystemExit(f'bench_fidelity: no noisy image for {missing[:5]} in {root}')
    if not pairs:
        raise SystemExit(f'bench_fidelity: no pairs found in {root} (gt/ + lq/, or *{clean_suffix} + *{noisy_suffix})')
    return pairs


def write_tiles(pairs, split, root, size, paired_tiles, seed):
    """Cut every scene of ``split`` into tiles under ``root`` in the demo's folder layout; returns (folders, facts)."""
    folders = {}
    # source/lq: the real noisy partners of the clean-only tiles, never shown to the noise model: the yardstick denoiser
    plan = {'paired': ('gt', 'lq'), 'source': ('gt', 'lq'), 'target': ('lq', ), 'test': ('gt', 'lq')}
    rng = np.random.default_rng(seed)
    counts = {}
    for role, kinds in plan.items():
        items = []
        for scene in split[role]:
            clean, noisy = (cv2.imread(p, cv2.IMREAD_COLOR) for p in pairs[scene])
            cut = zip(tiles(clean, size), tiles(noisy, size))
            items += [(f'{scene}_{k:03d}', x, y) for k, (x, y) in enumerate(cut)]
        if role == 'paired' and paired_tiles:
            keep = sorted(rng.choice(len(items), size=min(paired_tiles, len(items)), replace=False))
            items = [items[k] for k in keep]
        counts[role] = len(items)
        for kind in kinds:
            folder = os.path.join(root, role, kind)
            os.makedirs(folder, exist_ok=True)
            folders[f'{role}_{kind}'] = folder
            for name, x, y in items:
                cv2.imwrite(os.path.join(folder, f'{name}.png'), x if kind == 'gt' else y)
    facts = {'camera': f'real pairs ({sum(len(v) for v in split.values())} scenes, tiles of {size}x{size})',
             'paired': counts['paired'], 'source': counts['source'], 'target': counts['target'],
             'test': counts['test'], 'split': split}
    return folders, facts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--pairs', required=True, help='folder of real pairs (see above)')
    p.add_argument('--clean-suffix', default='_mean')
    p.add_argument('--noisy-suffix', default='_real')
    p.add_argument('--out', default=os.path.join('results', 'fidelity'))
    p.add_argument('--tile', type=int, default=128)
    p.add_argument('--paired-scenes', type=int, default=3)
    p.add_argument('--paired-tiles', type=int, default=10, help='k: tiles of the paired scenes used as pairs')
    p.add_argument('--source-scenes', type=int, default=4)
    p.add_argument('--target-scenes', type=int, default=4)
    p.add_argument('--test-scenes', type=int, default=4)
    p.add_argument('--iters', type=int, help='SeNM-VAE iterations (default: options/train/senm_cpu.yml, 1,500)')
    p.add_argument('--denoiser-iters', type=int, help='ScaoedNet iterations (default: options/demo/demo_scaoednet.yml)')
    p.add_argument('--split', choices=SPLITS, default='stratified',
                   help='how scenes get their roles (default stratified: held-out conditions have noisy-only scenes)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--jobs', type=int, default=min(2, cpu_cores()), help='denoisers trained at a time (default 2)')
    args = p.parse_args(argv)
    start = time.time()
    pairs = find_pairs(args.pairs, args.clean_suffix, args.noisy_suffix)
    split = split_scenes(pairs, {'paired': args.paired_scenes, 'source': args.source_scenes,
                                 'target': args.target_scenes, 'test': args.test_scenes}, args.seed, args.split)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    demo.stage(1, f'splitting {len(pairs)} scenes by role and cutting {args.tile}x{args.tile} tiles')
    folders, facts = write_tiles(pairs, split, os.path.join(out, 'data'), args.tile, args.paired_tiles, args.seed)
    for role, scenes in split.items():
        print(f'    {role}: {", ".join(scenes)}')
    iters, den_iters = demo.default_iters(args.iters, args.denoiser_iters)
    summary = demo.run_pipeline(folders, facts, out, iters, den_iters, args.seed, REAL_CAMERA_SAMPLING, args.jobs)
    summary['seconds'] = round(time.time() - start, 1)
    print('\n' + write_summary(summary, out, title='bench_fidelity: learned noise on real camera pairs'))
    return 0


if __name__ == '__main__':
    sys.exit(main())

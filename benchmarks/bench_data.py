"""Tri-domain data speed: loader throughput from LMDB vs PNG folders, and the time ``basicsr prepare`` takes.

Run: ``python benchmarks/bench_data.py [--quick] [--workers 2] [--keep DIR]``. Everything is synthetic and made in a
temporary folder: 256x256 clean/noisy PNGs (like the SIDD crops) for the loader, and a SIDD-Medium-shaped folder of
1024x1024 pairs for preparation. Ratios are against the PNG-folder loader measured in the same run; the SeNM-VAE
step time to compare with is the reference SeNM-VAE's (about 20 s for a batch of 8 of 64x64 on a 2-core CPU, timed
with its SIDD/train.py; see the SeNM-VAE section of RESULTS.md).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import senm_plugin  # noqa: F401,E402
from basicsr.data import build_dataloader, build_dataset  # noqa: E402
from basicsr.data.data_sampler import EnlargedSampler  # noqa: E402
from senm_plugin.tools import prepare  # noqa: E402

REFERENCE_STEP_SECONDS = 20.0  # zhengdihan/SeNM-VAE SIDD/train.py step, batch 8 of 64x64, 2-core CPU (RESULTS.md)


def _noisy_pair(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    phase = rng.uniform(0, 6.3, 3)
    clean = np.stack([120 + 90 * np.sin(6 * (xx + yy * (c + 1)) + phase[c]) for c in range(3)], -1)
    noisy = clean + rng.normal(0, 12, clean.shape)
    return np.clip(clean, 0, 255).astype(np.uint8), np.clip(noisy, 0, 255).astype(np.uint8)


def make_folders(root, count, size=256, seed=0):
    """PNG folders pgt/plq (pairs), src (clean), tgt (noisy) with ``count`` images each."""
    rng = np.random.default_rng(seed)
    dirs = {k: os.path.join(root, k) for k in ('pgt', 'plq', 'src', 'tgt')}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    for i in range(count):
        for gt_dir, lq_dir in (('pgt', 'plq'), ('src', None), (None, 'tgt')):
            clean, noisy = _noisy_pair(rng, size, size)
            if gt_dir:
                cv2.imwrite(os.path.join(dirs[gt_dir], f'{i:04d}.png'), clean)
            if lq_dir:
                cv2.imwrite(os.path.join(dirs[lq_dir], f'{i:04d}.png'), noisy)
    return dirs


def make_sidd(root, pairs, size=1024, seed=1):
    """A SIDD-Medium-shaped folder with ``pairs`` clean/noisy pairs of size x size."""
    rng = np.random.default_rng(seed)
    for i in range(pairs):
        folder = os.path.join(root, 'Data', f'{i // 2 + 1:04d}_001_S6_00100_00060_3200_L')
        os.makedirs(folder, exist_ok=True)
        clean, noisy = _noisy_pair(rng, size, size)
        frame = '010' if i % 2 == 0 else '011'
        cv2.imwrite(os.path.join(folder, f'{i // 2 + 1:04d}_GT_SRGB_{frame}.PNG'), clean)
        cv2.imwrite(os.path.join(folder, f'{i // 2 + 1:04d}_NOISY_SRGB_{frame}.PNG'), noisy)
    return root


def loader_throughput(opt, batches, workers):
    """Samples per second of BasicSR's train dataloader (EnlargedSampler, ``workers`` processes), after a warm-up."""
    opt = dict(opt, name='bench', type='TriDomainDataset', phase='train', gt_size=64, use_hflip=True, use_rot=True,
               num_worker_per_gpu=workers, batch_size_per_gpu=8, persistent_workers=workers > 0)
    dataset = build_dataset(opt)
    sampler = EnlargedSampler(dataset, 1, 0, ratio=100)
    loader = build_dataloader(dataset, opt, num_gpu=0, dist=False, sampler=sampler, seed=0)
    it = iter(loader)
    for _ in range(3):  # workers start, files get cached
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    elapsed = time.perf_counter() - start
    assert batch['gt'].shape == (8, 3, 64, 64)
    return batches * 8 / elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='small sizes: checks the script runs (seconds)')
    parser.add_argument('--workers', type=int, default=2, help='loader and preparation worker processes')
    parser.add_argument('--keep', help='make the data in this folder and keep it (default: a temporary folder)')
    args = parser.parse_args(argv)
    images = 16 if args.quick else 200
    batches = 10 if args.quick else 200
    crops_per_image = 10 if args.quick else 100  # x 10 images = 100 / 1,000 crops
    root = args.keep or tempfile.mkdtemp(prefix='bench_data_')
    try:
        dirs = make_folders(os.path.join(root, 'png'), images)
        lmdb_dir = os.path.join(root, 'lmdb')
        start = time.perf_counter()
        prepare.main(['folders', '--paired-gt', dirs['pgt'], '--paired-lq', dirs['plq'], '--source', dirs['src'],
                      '--target', dirs['tgt'], '--out', lmdb_dir, '--workers', str(args.workers)])
        pack_seconds = time.perf_counter() - start
        disk = dict(dataroot_paired_gt=dirs['pgt'], dataroot_paired_lq=dirs['plq'], dataroot_source=dirs['src'],
                    dataroot_target=dirs['tgt'], io_backend={'type': 'disk'})
        lmdb = dict(dataroot_paired_gt=f'{lmdb_dir}/paired_gt.lmdb', dataroot_paired_lq=f'{lmdb_dir}/paired_lq.lmdb',
                    dataroot_source=f'{lmdb_dir}/source.lmdb', dataroot_target=f'{lmdb_dir}/target.lmdb',
                    io_backend={'type': 'lmdb'})
        disk_rate = loader_throughput(disk, batches, args.workers)
        lmdb_rate = loader_throughput(lmdb, batches, args.workers)

        sidd = make_sidd(os.path.join(root, 'SIDD_Medium_Srgb'), 10)
        start = time.perf_counter()
        prepare.main(['sidd', '--src', sidd, '--out', os.path.join(root, 'SIDD'), '--paired', '10', '--crop', '256',
                      '--crops-per-image', str(crops_per_image), '--workers', str(args.workers)])
        prep_seconds = time.perf_counter() - start
        crops = 10 * crops_per_image
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    need = 8 / REFERENCE_STEP_SECONDS
    print(f'\n== tri-domain loader: 64x64 crops from 256x256 PNGs, batch 8, {args.workers} workers, '
          f'{images} images per domain ==')
    print(f'PNG folders : {disk_rate:8.1f} samples/s  (baseline)')
    print(f'LMDB        : {lmdb_rate:8.1f} samples/s  ratio {lmdb_rate / disk_rate:.2f}x')
    print(f'SeNM-VAE reference step consumes {need:.2f} samples/s on this CPU class -> loader headroom '
          f'{min(disk_rate, lmdb_rate) / need:.0f}x')
    print(f'\n== preparation ({args.workers} workers) ==')
    print(f'prepare sidd: {crops} crops of 256x256 from 10 pairs of 1024x1024: {prep_seconds:.1f} s '
          f'({crops / prep_seconds:.0f} crops/s; 96,000 SIDD crops ~ {96000 / (crops / prep_seconds) / 60:.0f} min '
          'plus reading the larger SIDD images)')
    print(f'prepare folders: {4 * images} whole 256x256 images into 4 LMDBs: {pack_seconds:.1f} s')


if __name__ == '__main__':
    main()

"""The ``basicsr prepare`` verb: tri-domain LMDBs from SIDD-Medium, the SIDD validation .mat files or plain folders.

Each LMDB is in BasicSR's format (``data.mdb``, ``lock.mdb``, ``meta_info.txt``; keys are the names without
``.png``), written by worker processes through ``LmdbBuild`` (see ``lmdb_io``): a re-run keeps the verified finished
LMDBs made with the same settings and rebuilds the rest. ``split.json`` records the settings, the seed and where
every crop came from and went.
"""
import argparse
import hashlib
import json
import os
import sys
from multiprocessing import Pool
from os import path as osp

import cv2
import numpy as np

from senm_plugin.data.fileutil import check_writable_dir, content_stamp
from senm_plugin.data.image_io import ImageError, image_hw, list_images, match_pairs, read_bgr8
from senm_plugin.data.lmdb_io import (META_INFO, LmdbBuild, finished_status, key_clash, read_meta_info, safe_key,
                                      verify_lmdb, write_json_atomic)
from senm_plugin.data.sidd import VAL_FILES, find_sidd_pairs, load_sidd_val

SPLIT_FILE = 'split.json'


class PrepareError(RuntimeError):
    """A preparation that cannot go on; the message names the files or options at fault."""


# ------------------------------------------------------------------------------------------------------ planning
def _crop_origins(hw, size, count, seed, tag):
    """``count`` random top-left corners of ``size`` crops in an image of ``hw``; fixed by (seed, tag)."""
    h, w = hw
    rng = np.random.default_rng([seed, *tag])
    return np.stack([rng.integers(0, h - size + 1, count), rng.integers(0, w - size + 1, count)], 1).tolist()


def _image_sizes(paths):
    """Header sizes of image files; every unreadable file is reported at once."""
    sizes, errors = [], []
    for path in paths:
        try:
            sizes.append(image_hw(path))
        except ImageError as err:
            errors.append(str(err))
            sizes.append(None)
    if errors:
        raise PrepareError(f'{len(errors)} bad input file(s):\n  ' + '\n  '.join(errors))
    return sizes


def _check_images(files, sizes, lq_sizes, crop):
    """Report every pair whose sizes differ and every image smaller than ``crop`` at once (files: (gt, lq|None))."""
    problems = []
    for (gt, lq), hw, lq_hw in zip(files, sizes, lq_sizes or [None] * len(files)):
        if lq_hw is not None and hw != lq_hw:
            problems.append(f'{gt} is {hw[0]}x{hw[1]} but {lq} is {lq_hw[0]}x{lq_hw[1]}')
        elif crop and (hw[0] < crop or hw[1] < crop):
            problems.append(f'{gt}: image is {hw[0]}x{hw[1]}, smaller than --crop {crop}')
    if problems:
        raise PrepareError(f'{len(problems)} unusable input(s):\n  ' + '\n  '.join(problems))


def _crop_key(prefix, j, count):
    return f'{prefix}_c{j:0{max(3, len(str(count - 1)))}d}'


def plan_sidd(args):
    """Jobs and split record for ``prepare sidd``: N crops per pair, P paired crops, the rest halved."""
    pairs = find_sidd_pairs(args.src)
    both = _image_sizes([p['gt'] for p in pairs] + [p['lq'] for p in pairs])
    sizes, lq_sizes = both[:len(pairs)], both[len(pairs):]
    _check_images([(p['gt'], p['lq']) for p in pairs], sizes, lq_sizes, args.crop)
    n = args.crops_per_image
    crops = []  # (image index, j, key, top, left)
    for i, (p, hw) in enumerate(zip(pairs, sizes)):
        for j, (top, left) in enumerate(_crop_origins(hw, args.crop, n, args.seed, (0, i))):
            crops.append((i, j, _crop_key(p['key'], j, n), top, left))
    total = len(crops)
    if not 0 <= args.paired <= total:
        raise PrepareError(f'--paired {args.paired}: only {total} crops ({len(pairs)} images x {n})')
    rng = np.random.default_rng([args.seed, 1])
    order = rng.permutation(total)
    paired = order[:args.paired]
    rest = rng.permutation(total) if args.split_all else order[args.paired:]
    half = len(rest) // 2
    members = {'paired': sorted(paired.tolist()), 'source': sorted(rest[:half].tolist()),
               'target': sorted(rest[half:].tolist())}
    # crop index -> outputs (role read from the image, LMDB name)
    outputs = {c: [] for c in range(total)}
    for c in members['paired']:
        outputs[c] += [('gt', 'paired_gt'), ('lq', 'paired_lq')]
    for c in members['source']:
        outputs[c].append(('gt', 'source'))
    for c in members['target']:
        outputs[c].append(('lq', 'target'))
    jobs = [{'files': {'gt': p['gt'], 'lq': p['lq']}, 'hw': sizes[i], 'crops': [], 'outputs': []}
            for i, p in enumerate(pairs)]
    for c, (i, j, key, top, left) in enumerate(crops):
        job = jobs[i]
        job['crops'].append((top, left, args.crop))
        job['outputs'] += [(j, role, name, key) for role, name in outputs[c]]
    record = {
        'kind': 'sidd', 'seed': args.seed, 'crop': args.crop, 'crops_per_image': n, 'paired': args.paired,
        'split_all': bool(args.split_all),
        'note': 'paired: a random --paired crops; source: clean crops of the first half of the '
        + ('other crops' if not args.split_all else 'crops (all, paired ones included)') + '; target: noisy crops of '
        'the second half. crops: key -> [image index, top, left]',
        'images': [{'gt': p['rel_gt'], 'lq': p['rel_lq'], 'hw': list(hw)} for p, hw in zip(pairs, sizes)],
        'crops': {key: [i, top, left] for i, _, key, top, left in crops},
        'domains': {d: [crops[c][2] for c in m] for d, m in members.items()},
    }
    return jobs, record


def plan_folders(args):
    """Jobs and split record for ``prepare folders``: each given domain from its folder(s), whole or cropped."""
    if bool(args.paired_gt) != bool(args.paired_lq):
        raise PrepareError('--paired-gt and --paired-lq must be given together')
    if args.paired_gt and osp.realpath(args.paired_gt) == osp.realpath(args.paired_lq):
        raise PrepareError(f'--paired-gt and --paired-lq are the same folder ({args.paired_gt}): the clean and the '
                           'noisy images of the pairs must be in two folders')
    if not (args.paired_gt or args.source or args.target):
        raise PrepareError('give at least one of --paired-gt/--paired-lq, --source, --target')
    if args.crop is None and args.crops_per_image is not None:
        raise PrepareError('--crops-per-image needs --crop')
    n = (args.crops_per_image or 1) if args.crop else 1
    domains = []  # (domain, [(gt file, lq file or None)], roots, lmdb names per role)
    if args.paired_gt:
        gt_names, lq_names = match_pairs(list_images(args.paired_gt, '--paired-gt'),
                                         list_images(args.paired_lq, '--paired-lq'), args.paired_gt, args.paired_lq)
        files = [(osp.join(args.paired_gt, g), osp.join(args.paired_lq, q)) for g, q in zip(gt_names, lq_names)]
        domains.append(('paired', files, {'gt': 'paired_gt', 'lq': 'paired_lq'}))
    if args.source:
        files = [(osp.join(args.source, g), None) for g in list_images(args.source, '--source')]
        domains.append(('source', files, {'gt': 'source'}))
    if args.target:
        files = [(osp.join(args.target, q), None) for q in list_images(args.target, '--target')]
        domains.append(('target', files, {'lq': 'target'}))
    jobs, record = [], {'kind': 'folders', 'seed': args.seed, 'crop': args.crop, 'crops_per_image': n, 'domains': {},
                        'note': 'domains: LMDB key -> [file, top, left, size] (size null: the whole image)'}
    for d, (domain, files, lmdb_names) in enumerate(domains):
        both = _image_sizes([f[0] for f in files] + [f[1] for f in files if f[1]])
        sizes, lq_sizes = both[:len(files)], both[len(files):] or None
        _check_images(files, sizes, lq_sizes, args.crop)
        clash = key_clash([osp.splitext(osp.basename(f[0]))[0] for f in files], [f[0] for f in files])
        if clash:
            raise PrepareError(f'{domain}: {clash[0]} and {clash[1]} give the same LMDB key {clash[2]!r} (the name '
                               'without its extension, other characters than [A-Za-z0-9_-] made _); rename one')
        prefixes = [safe_key(osp.splitext(osp.basename(f[0]))[0]) for f in files]
        entries = record['domains'][domain] = {}
        for i, ((g, q), hw, prefix) in enumerate(zip(files, sizes, prefixes)):
            roles = {'gt': g, 'lq': q} if domain == 'paired' else {next(iter(lmdb_names)): g}
            if args.crop:
                origins = _crop_origins(hw, args.crop, n, args.seed, (2, d, i))
                crops = [(top, left, args.crop) for top, left in origins]
                keys = [_crop_key(prefix, j, n) for j in range(n)]
            else:
                crops, keys = None, [prefix]
            job = {'files': roles, 'hw': hw, 'crops': crops, 'outputs': []}
            for j, key in enumerate(keys):
                job['outputs'] += [(j, role, name, key) for role, name in lmdb_names.items()]
                top, left, size = crops[j] if crops else (0, 0, None)
                entries[key] = [osp.abspath(g), top, left, size]
            jobs.append(job)
    return jobs, record


def plan_sidd_val(args):
    """Jobs and record for ``prepare sidd-val``: every validation block into ``gt.lmdb`` and ``lq.lmdb``."""
    gt, lq = load_sidd_val(args.src)
    num_img, num_blk = gt.shape[:2]
    width = max(2, len(str(max(num_img, num_blk) - 1)))

    def jobs():  # a generator: blocks reach the workers image by image instead of all at once
        for i in range(num_img):
            keys = [f'{i:0{width}d}_{b:0{width}d}' for b in range(num_blk)]
            yield {'arrays': {'gt': np.ascontiguousarray(gt[i, ..., ::-1]),  # RGB (MATLAB) -> BGR (OpenCV)
                              'lq': np.ascontiguousarray(lq[i, ..., ::-1])},
                   'outputs': [(b, role, role, k) for b, k in enumerate(keys) for role in ('gt', 'lq')]}

    sizes = {role: osp.getsize(osp.join(args.src, name)) for role, (name, _) in VAL_FILES.items()}
    record = {'kind': 'sidd-val', 'shape': list(gt.shape), 'mat_bytes': sizes,
              'note': 'key II_BB = block BB of validation image II'}
    return _Lazy(jobs, num_img, num_img * num_blk * gt[0, 0].nbytes), record


class _Lazy:
    """Jobs made on demand (to bound memory): ``make()`` gives the iterator, ``len`` the job count."""

    def __init__(self, make, count, raw_bytes_per_lmdb):
        self.make, self.count, self.raw_bytes_per_lmdb = make, count, raw_bytes_per_lmdb

    def __iter__(self):
        return self.make()

    def __len__(self):
        return self.count


# ------------------------------------------------------------------------------------------------------ writing
def _init_worker():
    cv2.setNumThreads(1)  # one process per core already


def run_job(job, compress_level=1):
    """Read one image (or pair) and PNG-encode its outputs: ``(entries, error)``; entries are (lmdb, key, bytes,
    shape). Bad files come back as an error message naming them, so the main process can report them all."""
    try:
        if 'arrays' in job:
            images = job['arrays']
        else:
            roles = {role for _, role, _, _ in job['outputs']}
            images = {}
            for role in sorted(roles):
                path = job['files'][role]
                img = read_bgr8(path, ignore_orientation=True)  # header sizes (PIL) ignore EXIF rotation too
                if tuple(img.shape[:2]) != tuple(job['hw']):
                    raise ImageError(f'{path}: decodes to {img.shape[:2]}, its header says {tuple(job["hw"])}')
                images[role] = img
        entries = []
        for j, role, name, key in job['outputs']:
            img = images[role]
            if 'arrays' in job:
                patch = img[j]
            elif job['crops'] is None:
                patch = img
            else:
                top, left, size = job['crops'][j]
                patch = img[top:top + size, left:left + size]
            ok, buf = cv2.imencode('.png', patch, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
            if not ok:
                raise ImageError(f'{key}: PNG encoding failed')
            entries.append((name, key, buf.tobytes(), patch.shape))
        return entries, None
    except ImageError as err:
        return None, str(err)


def fingerprint(record):
    """A hash of everything that decides an LMDB's content (the split record without absolute source paths)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _map_size(jobs, names):
    """LMDB map size per name: 1.5x the raw bytes (PNG of noise can exceed raw) + a page per entry + 64 MB."""
    if isinstance(jobs, _Lazy):
        return {name: int(jobs.raw_bytes_per_lmdb * 1.5) + 2**26 for name in names}
    raw = dict.fromkeys(names, 0)
    for job in jobs:
        for j, _, name, _ in job['outputs']:
            if name in raw:
                h, w = (job['crops'][j][2], ) * 2 if job['crops'] else job['hw']
                raw[name] += h * w * 3 * 1.5 + 8192
    return {name: int(size) + 2**26 for name, size in raw.items()}


def build_lmdbs(out_dir, names, jobs, record, workers=1, overwrite=False, compress_level=1, desc='prepare'):
    """Write the LMDBs ``names`` from ``jobs`` into ``out_dir``; keeps verified finished ones; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    if not isinstance(jobs, _Lazy):  # the inputs' content counts too: an edited image gives another fingerprint
        record = dict(record, content=content_stamp(sorted({p for job in jobs for p in job['files'].values() if p})))
    fp = fingerprint(record)
    status = {name: finished_status(osp.join(out_dir, f'{name}.lmdb'), fp) for name in names}
    other = [osp.join(out_dir, f'{n}.lmdb') for n in names if status[n] == 'other']
    if other and not overwrite:
        raise PrepareError(f'{", ".join(other)} were prepared with other settings or inputs (see '
                           f'{osp.join(out_dir, SPLIT_FILE)}); pass --overwrite to rebuild them, or another --out')
    todo = [n for n in names if status[n] != 'done']
    for name in names:
        if name not in todo:
            print(f'{osp.join(out_dir, name)}.lmdb: finished and verified, kept')
    if todo:
        _write(out_dir, todo, jobs, fp, workers, compress_level, desc)
    write_json_atomic(osp.join(out_dir, SPLIT_FILE), dict(record, fingerprint=fp))
    return [osp.join(out_dir, f'{n}.lmdb') for n in names]


def _select(jobs, todo):
    for job in jobs:
        outputs = [o for o in job['outputs'] if o[2] in todo]
        if outputs:
            yield dict(job, outputs=outputs)


def _write(out_dir, todo, jobs, fp, workers, compress_level, desc):
    from tqdm import tqdm
    todo = set(todo)
    map_sizes = _map_size(jobs, todo)
    builds = {}
    errors = []
    try:
        for name in sorted(todo):
            builds[name] = LmdbBuild(out_dir, name, fp, compress_level, map_size=map_sizes[name])
        work = run_job if compress_level == 1 else _PngLevel(compress_level)
        selected = _select(jobs, todo) if isinstance(jobs, _Lazy) else list(_select(jobs, todo))
        total = len(jobs) if isinstance(jobs, _Lazy) else len(selected)
        pool = Pool(workers, initializer=_init_worker) if workers > 1 else None
        try:
            results = pool.imap(work, selected) if pool else map(work, selected)
            for entries, error in tqdm(results, total=total, desc=desc, unit='image', file=sys.stderr):
                if error:
                    errors.append(error)
                elif not errors:  # after a bad file nothing more is written; the remaining files are still checked
                    for name, key, content, shape in entries:
                        builds[name].put(key, content, shape)
        finally:
            if pool:
                pool.terminate()
                pool.join()
        if errors:
            raise PrepareError(f'{len(errors)} bad input file(s); nothing was kept of the unfinished LMDBs '
                               f'({", ".join(sorted(todo))}):\n  ' + '\n  '.join(errors))
        for name in sorted(builds):
            path = builds.pop(name).finish()
            print(f'{path}: written and verified')
    finally:
        for build in builds.values():  # unfinished: interrupted or failed
            build.abort()


class _PngLevel:
    """``run_job`` with another PNG compression level (picklable for the worker pool)."""

    def __init__(self, level):
        self.level = level

    def __call__(self, job):
        return run_job(job, self.level)


# ------------------------------------------------------------------------------------------------------ command line
def _parser():
    parser = argparse.ArgumentParser(prog='basicsr prepare', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='what', required=True)

    def common(p):
        p.add_argument('--out', required=True, help='output folder (LMDBs and split.json)')
        p.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1), help='worker processes')
        p.add_argument('--overwrite', action='store_true', help='rebuild LMDBs made with other settings')
        p.add_argument('--compress-level', type=int, default=1, choices=range(10), metavar='0-9',
                       help='PNG compression level (BasicSR: 1)')

    p = sub.add_parser('sidd', help='SIDD-Medium sRGB -> paired_gt, paired_lq, source, target LMDBs')
    p.add_argument('--src', required=True, help='the SIDD_Medium_Srgb folder (holding Data/)')
    p.add_argument('--paired', type=int, default=10, help='number of paired crops (paper: 10, 96 or 960)')
    p.add_argument('--seed', type=int, default=0, help='fixes the crops and the split')
    p.add_argument('--crop', type=int, default=256, help='crop size (paper: 256)')
    p.add_argument('--crops-per-image', type=int, default=300, help='crops per image (paper: 300)')
    p.add_argument('--split-all', action='store_true',
                   help='halve all crops into source/target, paired ones included (as the reference code does); '
                   'default: halve the crops not in the paired set')
    common(p)
    p = sub.add_parser('sidd-val', help='SIDD validation .mat files -> gt and lq LMDBs (1,280 blocks)')
    p.add_argument('--src', required=True, help='folder with ValidationGtBlocksSrgb.mat, ValidationNoisyBlocksSrgb.mat')
    common(p)
    p = sub.add_parser('folders', help='your own folders -> paired_gt/paired_lq, source, target LMDBs (any subset)')
    p.add_argument('--paired-gt', help='clean images of the pairs')
    p.add_argument('--paired-lq', help='noisy images of the pairs (same names as --paired-gt)')
    p.add_argument('--source', help='clean images without a noisy partner')
    p.add_argument('--target', help='noisy images without a clean partner')
    p.add_argument('--crop', type=int, help='cut random crops of this size (default: store whole images)')
    p.add_argument('--crops-per-image', type=int, help='crops per image with --crop (default 1)')
    p.add_argument('--seed', type=int, default=0, help='fixes the crops and the split')
    common(p)
    p = sub.add_parser('verify', help='check LMDBs whole: every key of meta_info.txt present and decoding to its '
                       'size (also: basicsr prepare --verify DIR)')
    p.add_argument('dirs', nargs='+', help='LMDBs, or folders holding *.lmdb')
    return parser


def verify(dirs):
    """``basicsr prepare verify``: check every LMDB in ``dirs`` whole; returns the LMDB paths checked."""
    lmdbs = []
    for d in dirs:
        if osp.isfile(osp.join(d, META_INFO)):
            lmdbs.append(d)
        elif osp.isdir(d):
            found = sorted(osp.join(d, n) for n in os.listdir(d) if n.endswith('.lmdb'))
            if not found:
                raise PrepareError(f'{d} is neither an LMDB (no {META_INFO}) nor a folder holding *.lmdb')
            lmdbs += found
        else:
            raise PrepareError(f'{d} does not exist')
    for path in lmdbs:
        entries = read_meta_info(path, 'verify')
        verify_lmdb(path, entries, 'verify', decode='all')
        print(f'ok: {path} ({len(entries)} images, every key present and decoding to its listed size)')
    return lmdbs


def main(argv=None):
    """Entry point of ``basicsr prepare``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['--verify']:
        argv[0] = 'verify'
    args = _parser().parse_args(argv)
    if args.what == 'verify':
        try:
            verify(args.dirs)
        except (PrepareError, ValueError, FileNotFoundError) as err:
            print(f'basicsr prepare verify: error: {err}', file=sys.stderr)
            return 1
        return 0
    for name in ('crop', 'crops_per_image', 'workers'):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise SystemExit(f'basicsr prepare: --{name.replace("_", "-")} must be >= 1, got {value}')
    problem = check_writable_dir(args.out, '--out')
    if problem:
        print(f'basicsr prepare {args.what}: error: {problem}', file=sys.stderr)
        return 1
    try:
        if args.what == 'sidd':
            jobs, record = plan_sidd(args)
        elif args.what == 'folders':
            jobs, record = plan_folders(args)
        else:
            jobs, record = plan_sidd_val(args)
        names = _lmdb_names(args.what, record)
        paths = build_lmdbs(args.out, names, jobs, record, args.workers, args.overwrite, args.compress_level,
                            desc=f'prepare {args.what}')
    except (PrepareError, ImageError, ValueError, FileNotFoundError) as err:
        print(f'basicsr prepare {args.what}: error: {err}', file=sys.stderr)
        return 1
    print(f'done: {", ".join(paths)} and {osp.join(args.out, SPLIT_FILE)}')
    return 0


def _lmdb_names(what, record):
    if what == 'sidd-val':
        return ['gt', 'lq']
    names = []
    for domain in ('paired', 'source', 'target'):
        if record['domains'].get(domain):
            names += ['paired_gt', 'paired_lq'] if domain == 'paired' else [domain]
    return names


if __name__ == '__main__':
    sys.exit(main())

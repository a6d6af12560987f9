"""What ``basicsr prepare`` will write, before anything is read whole: for SIDD-Medium, the SIDD validation blocks or
plain folders, the list of jobs (an image or pair, its crops and the LMDB each crop goes to) and the split record
(settings, seed, where every crop came from and went)."""
from os import path as osp

import numpy as np

from senm_plugin.data.image_io import ImageError, image_hw, list_images, match_pairs
from senm_plugin.data.lmdb_io import key_clash, safe_key
from senm_plugin.data.sidd import VAL_FILES, find_sidd_pairs, load_sidd_val
from senm_plugin.errors import PrepareError


def crop_origins(hw, size, count, seed, tag):
    """``count`` random top-left corners of ``size`` crops in an image of ``hw``; fixed by (seed, tag)."""
    h, w = hw
    rng = np.random.default_rng([seed, *tag])
    return np.stack([rng.integers(0, h - size + 1, count), rng.integers(0, w - size + 1, count)], 1).tolist()


def image_sizes(paths):
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


def check_images(files, sizes, lq_sizes, crop):
    """Report every pair whose sizes differ and every image smaller than ``crop`` at once (files: (gt, lq|None))."""
    problems = []
    for (gt, lq), hw, lq_hw in zip(files, sizes, lq_sizes or [None] * len(files)):
        if lq_hw is not None and hw != lq_hw:
            problems.append(f'{gt} is {hw[0]}x{hw[1]} but {lq} is {lq_hw[0]}x{lq_hw[1]}')
        elif crop and (hw[0] < crop or hw[1] < crop):
            problems.append(f'{gt}: image is {hw[0]}x{hw[1]}, smaller than --crop {crop}')
    if problems:
        raise PrepareError(f'{len(problems)} unusable input(s):\n  ' + '\n  '.join(problems))


def crop_key(prefix, j, count):
    """The LMDB key of crop ``j`` of ``count`` cut from the image keyed ``prefix``."""
    return f'{prefix}_c{j:0{max(3, len(str(count - 1)))}d}'


def plan_sidd(args):
    """Jobs and split record for ``prepare sidd``: N crops per pair, P paired crops, the rest halved."""
    pairs = find_sidd_pairs(args.src)
    both = image_sizes([p['gt'] for p in pairs] + [p['lq'] for p in pairs])
    sizes, lq_sizes = both[:len(pairs)], both[len(pairs):]
    check_images([(p['gt'], p['lq']) for p in pairs], sizes, lq_sizes, args.crop)
    n = args.crops_per_image
    crops = []  # (image index, j, key, top, left)
    for i, (p, hw) in enumerate(zip(pairs, sizes)):
        for j, (top, left) in enumerate(crop_origins(hw, args.crop, n, args.seed, (0, i))):
            crops.append((i, j, crop_key(p['key'], j, n), top, left))
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
        both = image_sizes([f[0] for f in files] + [f[1] for f in files if f[1]])
        sizes, lq_sizes = both[:len(files)], both[len(files):] or None
        check_images(files, sizes, lq_sizes, args.crop)
        clash = key_clash([osp.splitext(osp.basename(f[0]))[0] for f in files], [f[0] for f in files])
        if clash:
            raise PrepareError(f'{domain}: {clash[0]} and {clash[1]} give the same LMDB key {clash[2]!r} (the name '
                               'without its extension, other characters than [A-Za-z0-9_-] made _); rename one')
        prefixes = [safe_key(osp.splitext(osp.basename(f[0]))[0]) for f in files]
        entries = record['domains'][domain] = {}
        for i, ((g, q), hw, prefix) in enumerate(zip(files, sizes, prefixes)):
            roles = {'gt': g, 'lq': q} if domain == 'paired' else {next(iter(lmdb_names)): g}
            if args.crop:
                origins = crop_origins(hw, args.crop, n, args.seed, (2, d, i))
                crops = [(top, left, args.crop) for top, left in origins]
                keys = [crop_key(prefix, j, n) for j in range(n)]
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
    return LazyJobs(jobs, num_img, num_img * num_blk * gt[0, 0].nbytes), record


class LazyJobs:
    """Jobs made on demand (to bound memory): ``make()`` gives the iterator, ``len`` the job count."""

    def __init__(self, make, count, raw_bytes_per_lmdb):
        self.make, self.count, self.raw_bytes_per_lmdb = make, count, raw_bytes_per_lmdb

    def __iter__(self):
        return self.make()

    def __len__(self):
        return self.count

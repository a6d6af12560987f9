"""The ``basicsr prepare`` verb: tri-domain LMDBs from SIDD-Medium, the SIDD validation .mat files or plain folders.

Each LMDB is in BasicSR's format (``data.mdb``, ``lock.mdb``, ``meta_info.txt``; keys are the names without
``.png``), written by worker processes through ``LmdbBuild`` (see ``lmdb_io``): a re-run keeps the verified finished
LMDBs made with the same settings and rebuilds the rest. ``split.json`` records the settings, the seed and where
every crop came from and went.
"""
import argparse
import os
import sys
from multiprocessing import Pool
from os import path as osp

import cv2

from senm_plugin.data.image_io import ImageError, read_bgr8
from senm_plugin.data.lmdb_io import META_INFO, LmdbBuild, finished_status, read_meta_info, verify_lmdb
from senm_plugin.errors import PrepareError
from senm_plugin.fileutil import check_writable_dir, content_stamp, record_fingerprint, write_json_atomic
from senm_plugin.tools.options import parsed_args
from senm_plugin.tools.prepare_plan import LazyJobs, plan_folders, plan_sidd, plan_sidd_val

SPLIT_FILE = 'split.json'


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


def _map_size(jobs, names):
    """LMDB map size per name: 1.5x the raw bytes (PNG of noise can exceed raw) + a page per entry + 64 MB."""
    if isinstance(jobs, LazyJobs):
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
    if not isinstance(jobs, LazyJobs):  # the inputs' content counts too: an edited image gives another fingerprint
        record = dict(record, content=content_stamp(sorted({p for job in jobs for p in job['files'].values() if p})))
    fp = record_fingerprint(record)  # the split record holds no absolute source path
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
        selected = _select(jobs, todo) if isinstance(jobs, LazyJobs) else list(_select(jobs, todo))
        total = len(jobs) if isinstance(jobs, LazyJobs) else len(selected)
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
def parser():
    """The command line of ``basicsr prepare``."""
    top = argparse.ArgumentParser(prog='basicsr prepare', description=__doc__.split('\n')[0])
    sub = top.add_subparsers(dest='what', required=True)

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
    return top


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


def prepare_args(what, **options):
    """The arguments of ``basicsr prepare <what>`` (sidd, sidd-val or folders): the command line's defaults with
    ``options`` (``out`` required) set."""
    required = ['--out', str(options['out'])] + (['--src', str(options['src'])] if what != 'folders' else [])
    return parsed_args(parser(), [what] + required, options, f'basicsr prepare {what}')


def run_prepare(args):
    """``basicsr prepare sidd|sidd-val|folders`` with parsed arguments (or ``prepare_args``): plan the jobs and write
    the LMDBs; returns their paths."""
    for name in ('crop', 'crops_per_image', 'workers'):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise PrepareError(f'--{name.replace("_", "-")} must be >= 1, got {value}')
    problem = check_writable_dir(args.out, '--out')
    if problem:
        raise PrepareError(problem)
    plan = {'sidd': plan_sidd, 'folders': plan_folders, 'sidd-val': plan_sidd_val}[args.what]
    jobs, record = plan(args)
    return build_lmdbs(args.out, _lmdb_names(args.what, record), jobs, record, args.workers, args.overwrite,
                       args.compress_level, desc=f'prepare {args.what}')


def main(argv=None):
    """Entry point of ``basicsr prepare``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['--verify']:
        argv[0] = 'verify'
    args = parser().parse_args(argv)
    try:
        if args.what == 'verify':
            verify(args.dirs)
            return 0
        paths = run_prepare(args)
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

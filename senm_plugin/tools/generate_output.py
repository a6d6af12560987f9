"""The output folder of ``basicsr generate``: its layout, its lock, what ``--overwrite`` may replace, and the LMDBs
built from the staged images once every image is there.

``<out>/gt`` + ``<out>/lq`` PNG folders (``--format png``) or ``<out>/gt.lmdb`` + ``<out>/lq.lmdb`` built from PNG files
staged in ``<out>/_staging`` (``--format lmdb``), and ``<out>/manifest.json``.
"""
import json
import os
from os import path as osp

from senm_plugin.data.lmdb_io import LmdbBuild, finished_status, remove_path
from senm_plugin.errors import GenerateError
from senm_plugin.fileutil import remove_stale_temps, write_json_atomic

MANIFEST = 'manifest.json'
STAGING = '_staging'
LOCK = '.generate.lock'


def output_roots(out, fmt):
    """(gt root, lq root, staging folder) of an output folder in format ``fmt``."""
    if fmt == 'png':
        return osp.join(out, 'gt'), osp.join(out, 'lq'), out
    return osp.join(out, 'gt.lmdb'), osp.join(out, 'lq.lmdb'), osp.join(out, STAGING)


def prepare_out(out, fingerprint, fmt, overwrite, inputs=()):
    """Check ``out`` holds nothing or a generation with the same fingerprint; returns its manifest or None.

    ``--overwrite`` only ever removes what an earlier ``basicsr generate`` wrote there (a folder with its manifest),
    and never a path that is, holds or lies inside one of ``inputs`` (the images this run reads).
    """
    path = osp.join(out, MANIFEST)
    if osp.isfile(path):
        with open(path) as f:
            manifest = json.load(f)
        if manifest.get('fingerprint') == fingerprint:
            return manifest
        if not overwrite:
            raise GenerateError(f'--out {out} holds a generation made with other settings or inputs (see {path}); '
                                'use another --out or --overwrite to replace it')
    elif osp.isdir(out) and set(os.listdir(out)) - {LOCK}:
        raise GenerateError(f'--out {out} is not empty and holds no {MANIFEST} of basicsr generate, so nothing there '
                            'is ours to replace (--overwrite only replaces an earlier generation); choose an empty or '
                            'new folder')
    names = (MANIFEST, 'gt', 'lq', 'gt.lmdb', 'lq.lmdb', STAGING, '_partial_gt.lmdb', '_partial_lq.lmdb')
    targets = [osp.join(out, name) for name in names]
    for target in targets:
        for inp in inputs:
            if osp.exists(target) and overlaps(target, inp):
                raise GenerateError(f'--overwrite would delete {target}, which holds this run\'s input {inp}; '
                                    'nothing was deleted. Write to another --out')
    for target in targets:
        remove_path(target)
    return None


def overlaps(a, b):
    """Whether paths ``a`` and ``b`` are the same or one lies inside the other."""
    a, b = osp.realpath(a), osp.realpath(b)
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


def lock_out(out):
    """Hold ``out/LOCK`` for this run: a second ``basicsr generate`` into the same folder stops at once instead of
    racing this one over the same files (the lock dies with its process, so a killed run leaves none behind)."""
    import fcntl
    os.makedirs(out, exist_ok=True)
    f = open(osp.join(out, LOCK), 'a+')
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or 'another process'
        f.close()
        raise GenerateError(f'--out {out} is being written by another basicsr generate ({holder}); wait for it to '
                            'finish (a re-run then finds its output) or stop it') from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()}')
    f.flush()
    return f


def unlock_out(f):
    """Release and remove the lock taken by ``lock_out``."""
    os.remove(f.name)  # still holding the lock: nobody else can have taken it meanwhile
    f.close()


def is_finished(out, fmt, keys, fingerprint):
    """Whether both outputs of a generation with ``fingerprint`` are all there."""
    gt_root, lq_root, _ = output_roots(out, fmt)
    if fmt == 'lmdb':
        return all(finished_status(p, fingerprint) == 'done' for p in (gt_root, lq_root))
    return all(osp.isfile(osp.join(root, k + '.png')) for root in (gt_root, lq_root) for k in keys)


def start_staging(stage):
    """Create the staging folders (gt, lq) and drop the half-written files an interrupted run left; returns them."""
    folders = osp.join(stage, 'gt'), osp.join(stage, 'lq')
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temps(folder)
    return folders


def finish_output(out, fmt, manifest, keys, shapes, fingerprint, compress_level):
    """Build the LMDBs from the staged PNG files (``--format lmdb``), mark the manifest complete and drop the
    staging folder."""
    _, _, stage = output_roots(out, fmt)
    if fmt == 'lmdb':
        for name in ('gt', 'lq'):
            if finished_status(osp.join(out, f'{name}.lmdb'), fingerprint) == 'done':
                continue
            build = LmdbBuild(out, name, fingerprint, compress_level=int(compress_level))
            try:
                for key, (h, w) in zip(keys, shapes):
                    with open(osp.join(stage, name, key + '.png'), 'rb') as f:
                        build.put(key, f.read(), (int(h), int(w), 3))
                build.finish()
            except BaseException:
                build.abort()
                raise
    manifest['complete'] = True
    write_json_atomic(osp.join(out, MANIFEST), manifest)
    if fmt == 'lmdb':
        remove_path(stage)

"""The SIDD files: the clean/noisy pairs of SIDD-Medium sRGB and the validation blocks in the .mat files.

SIDD-Medium sRGB holds 160 scene folders under ``Data/``, each with two clean/noisy pairs, e.g.
``Data/0001_001_S6_00100_00060_3200_L/0001_GT_SRGB_010.PNG`` and ``0001_NOISY_SRGB_010.PNG`` (and ``_011``): 320
pairs. The validation set is two MATLAB files of 40 images x 32 blocks of 256x256x3 uint8 sRGB (1,280 blocks).
"""
import os
import re
from os import path as osp

import numpy as np

from senm_plugin.data.lmdb_io import safe_key

GT_TAG, NOISY_TAG = 'GT_SRGB', 'NOISY_SRGB'
VAL_FILES = {'gt': ('ValidationGtBlocksSrgb.mat', 'ValidationGtBlocksSrgb'),
             'lq': ('ValidationNoisyBlocksSrgb.mat', 'ValidationNoisyBlocksSrgb')}


def find_sidd_pairs(src):
    """Clean/noisy pairs of a SIDD-Medium sRGB folder (``src`` or ``src/Data``): list of dicts with absolute ``gt``
    and ``lq`` paths, paths ``rel_gt`` / ``rel_lq`` relative to ``src`` and a unique ``key`` such as ``0001_010``."""
    if not osp.isdir(src):
        raise FileNotFoundError(f'--src: folder {src} does not exist')
    data = osp.join(src, 'Data') if osp.isdir(osp.join(src, 'Data')) else src
    pairs, problems = [], []
    for scene in sorted(os.listdir(data)):
        folder = osp.join(data, scene)
        if not osp.isdir(folder):
            continue
        names = sorted(os.listdir(folder))
        by_upper = {n.upper(): n for n in names}
        for name in names:
            upper = name.upper()
            if GT_TAG not in upper or not upper.endswith('.PNG'):
                continue
            noisy = by_upper.get(upper.replace(GT_TAG, NOISY_TAG))
            if noisy is None:
                problems.append(f'{osp.join(folder, name)} has no noisy partner (*{NOISY_TAG}*)')
                continue
            stem = osp.splitext(name)[0]
            key = safe_key(re.sub(GT_TAG + '_?', '', stem, flags=re.IGNORECASE).strip('_'))
            pairs.append({'gt': osp.join(folder, name), 'lq': osp.join(folder, noisy), 'key': key,
                          'rel_gt': osp.relpath(osp.join(folder, name), src),
                          'rel_lq': osp.relpath(osp.join(folder, noisy), src)})
        for name in names:  # noisy images without a clean partner
            upper = name.upper()
            if NOISY_TAG in upper and upper.endswith('.PNG') and upper.replace(NOISY_TAG, GT_TAG) not in by_upper:
                problems.append(f'{osp.join(folder, name)} has no clean partner')
    if problems:
        raise ValueError('SIDD pairs incomplete:\n  ' + '\n  '.join(problems))
    if not pairs:
        raise ValueError(f'--src: no *{GT_TAG}*.PNG / *{NOISY_TAG}*.PNG pairs under {data}/<scene>/ '
                         '(expected the SIDD-Medium sRGB layout, see datasets/README.md)')
    keys = [p['key'] for p in pairs]
    if len(set(keys)) != len(keys):  # not the SIDD naming: fall back to the scene folder in the key
        for p in pairs:
            p['key'] = safe_key(osp.splitext(p['rel_gt'])[0].replace(os.sep, '_'))
    return pairs


def load_sidd_val(src):
    """The validation blocks as two uint8 RGB arrays (images, blocks, H, W, 3): ``(gt, lq)``, read with scipy."""
    from scipy.io import loadmat
    arrays = {}
    for role, (filename, var) in VAL_FILES.items():
        path = osp.join(src, filename)
        if not osp.isfile(path):
            raise FileNotFoundError(f'--src: {path} is missing (SIDD validation .mat file, see datasets/README.md)')
        try:
            mat = loadmat(path)
        except Exception as err:  # noqa: BLE001 scipy raises several types for damaged files
            raise ValueError(f'{path}: cannot be read as a MATLAB file ({err})') from err
        if var not in mat:
            found = [k for k in mat if not k.startswith('__')]
            raise ValueError(f'{path}: no variable {var} (found {found})')
        arr = mat[var]
        if arr.ndim != 5 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(f'{path}: {var} should be uint8 of shape (images, blocks, H, W, 3), '
                             f'got {arr.dtype} {arr.shape}')
        arrays[role] = arr
    if arrays['gt'].shape != arrays['lq'].shape:
        raise ValueError(f'validation blocks differ in shape: gt {arrays["gt"].shape}, lq {arrays["lq"].shape}')
    return arrays['gt'], arrays['lq']

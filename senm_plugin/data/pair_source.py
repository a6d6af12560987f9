"""Scanning and reading images of a folder or a BasicSR LMDB for the registered datasets (through BasicSR's
FileClient), with errors that name the file or key at fault."""
from os import path as osp

from senm_plugin.data.image_io import ImageError, check_min_size, decode_bgr8, list_images, match_pairs
from senm_plugin.data.lmdb_io import read_meta_info, verify_lmdb


def scan_lmdb(root, key, min_size=None, what='gt_size'):
    """The keys of an LMDB, checked now (not hours into training): every entry present, none smaller than
    ``min_size``; returns (keys, {key: shape})."""
    entries = read_meta_info(root, key)
    verify_lmdb(root, entries, key)
    if min_size:
        for k, shape in entries:
            check_min_size(shape, int(min_size), f'{root}:{k}', what)
    return [k for k, _ in entries], dict(entries)


def scan_lmdb_pair(gt_root, lq_root, gt_key, lq_key, min_size=None, what='gt_size'):
    """Matched keys of a gt LMDB and an lq LMDB whose entries have equal shapes; returns (gt keys, lq keys)."""
    gt_names, gt_shapes = scan_lmdb(gt_root, gt_key, min_size, what)
    lq_names, lq_shapes = scan_lmdb(lq_root, lq_key)
    gt_names, lq_names = match_pairs(gt_names, lq_names, gt_root, lq_root)
    for k in gt_names:
        if lq_shapes[k] != gt_shapes[k]:
            raise ImageError(f'{gt_root}:{k} is {gt_shapes[k]} but {lq_root}:{k} is {lq_shapes[k]}')
    return gt_names, lq_names


def scan_folder_pair(gt_root, lq_root, gt_key, lq_key, gt_names=None, only_partners=False):
    """Matched file names of a gt folder and an lq folder (by stem); ``gt_names`` restricts the gt side (e.g. to a
    meta info file's list), and then, or with ``only_partners``, lq files without a gt partner are ignored rather
    than refused; returns (gt names, lq names)."""
    if gt_names is None:
        gt_names = list_images(gt_root, gt_key)
    else:
        only_partners = True
    lq_names = list_images(lq_root, lq_key)
    if only_partners:
        stems = {osp.splitext(n)[0] for n in gt_names}
        lq_names = [n for n in lq_names if osp.splitext(n)[0] in stems]
    return match_pairs(gt_names, lq_names, gt_root, lq_root)


def read_meta_names(meta, option):
    """The image names a meta info file lists (the first word of each line)."""
    with open(meta) as f:
        names = [line.split()[0] for line in f if line.strip()]
    if not names:
        raise ValueError(f'{option}: {meta} lists no image')
    return names


def read_image(client, backend, root, name, client_key):
    """Image ``name`` of ``root`` through a BasicSR FileClient as uint8 BGR; returns (image, where it came from)."""
    if backend == 'lmdb':
        where = f'{root}:{name}'
        content = client.get(name, client_key)
    else:
        where = osp.join(root, name)
        try:
            content = client.get(where)
        except OSError as err:
            raise ImageError(f'{where}: cannot be read ({err.strerror or err})') from err
    return decode_bgr8(content, where), where

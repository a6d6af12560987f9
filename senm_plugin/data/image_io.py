"""Image reading for the tri-domain data: BasicSR's decoding conventions, with errors that name the file.

Conversions (the same as BasicSR's ``imfrombytes``, i.e. OpenCV's ``IMREAD_COLOR``): grey images are repeated to 3
channels, 16-bit images keep their top 8 bits (value >> 8), an alpha channel is dropped (not composited). Images are
returned as uint8 BGR arrays of shape (H, W, 3).
"""
import os
from os import path as osp

import cv2
import numpy as np

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm', '.pnm')


class ImageError(ValueError):
    """An image that cannot be used; the message names the file (or LMDB key) and what to do."""


def decode_bgr8(content, name, flags=cv2.IMREAD_COLOR):
    """Decode encoded image bytes to a uint8 BGR (H, W, 3) array; ``name`` is used in error messages."""
    if content is None:
        raise ImageError(f'{name}: not found (missing file or LMDB key)')
    img = cv2.imdecode(np.frombuffer(content, np.uint8), flags)
    if img is None:
        raise ImageError(f'{name}: cannot be decoded as an image (corrupt, truncated or unsupported format)')
    return img


def read_bytes(path):
    """Read a whole file; a missing or unreadable file raises ImageError naming it."""
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as err:
        raise ImageError(f'{path}: cannot be read ({err.strerror or err})') from err


def read_bgr8(path, ignore_orientation=False):
    """Read an image file as uint8 BGR (H, W, 3); ``ignore_orientation`` skips EXIF rotation (raw pixel layout)."""
    flags = cv2.IMREAD_COLOR | (cv2.IMREAD_IGNORE_ORIENTATION if ignore_orientation else 0)
    return decode_bgr8(read_bytes(path), path, flags)


def image_hw(path):
    """Height and width of an image file from its header (no full decode); ImageError if it is not an image."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError) as err:
        raise ImageError(f'{path}: cannot be read as an image ({err})') from err
    return height, width


def list_images(folder, key):
    """Sorted image file names (not recursive) in ``folder``; a missing or empty folder raises naming option ``key``."""
    if not folder:
        raise ValueError(f'{key}: no folder given')
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{key}: folder {folder} does not exist')
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMG_EXTENSIONS) and not n.startswith('.'))
    if not names:
        raise ValueError(f'{key}: folder {folder} holds no images (extensions {", ".join(IMG_EXTENSIONS)})')
    return names


def check_min_size(hw, size, name, what='gt_size'):
    """Raise ImageError naming ``name`` when an image of shape ``hw`` is smaller than ``size`` on either side."""
    h, w = hw[:2]
    if h < size or w < size:
        raise ImageError(f'{name}: image is {h}x{w}, smaller than {what} {size}; remove it or lower {what}')


def match_pairs(gt_names, lq_names, gt_where, lq_where):
    """Pair names by stem (extension ignored); unmatched names raise ValueError listing them."""
    gt = {osp.splitext(n)[0]: n for n in gt_names}
    lq = {osp.splitext(n)[0]: n for n in lq_names}
    only_gt, only_lq = sorted(set(gt) - set(lq)), sorted(set(lq) - set(gt))
    if only_gt or only_lq:
        parts = []
        if only_gt:
            parts.append(f'{len(only_gt)} in {gt_where} without a partner (e.g. {", ".join(only_gt[:5])})')
        if only_lq:
            parts.append(f'{len(only_lq)} in {lq_where} without a partner (e.g. {", ".join(only_lq[:5])})')
        raise ValueError('paired gt and lq names do not match: ' + '; '.join(parts))
    if len(gt) != len(gt_names) or len(lq) != len(lq_names):
        raise ValueError(f'two files share a name stem in {gt_where} or {lq_where} (e.g. a.png and a.jpg)')
    stems = sorted(gt)
    return [gt[s] for s in stems], [lq[s] for s in stems]


def crop_for_phase(imgs, path, train, gt_size=None, use_hflip=False, use_rot=False, center_crop=None):
    """Crop aligned images (uint8 HWC, same size) as a dataset phase needs; returns the list of crops.

    Training: one random ``gt_size`` crop for all (Python's ``random``, the draws of BasicSR's paired_random_crop,
    seeded per worker by BasicSR) then the same flips/rotations (BasicSR ``augment``). Validation/test: a centre
    crop of ``center_crop`` or the full images. ``path`` names the first image in size errors.
    """
    import random
    from basicsr.data.transforms import augment
    if train:
        check_min_size(imgs[0].shape, gt_size, path)
        top = random.randint(0, imgs[0].shape[0] - gt_size)
        left = random.randint(0, imgs[0].shape[1] - gt_size)
        imgs = augment([img[top:top + gt_size, left:left + gt_size] for img in imgs], use_hflip, use_rot)
        return imgs if isinstance(imgs, list) else [imgs]
    if center_crop:
        size = int(center_crop)
        check_min_size(imgs[0].shape, size, path, 'center_crop')
        h, w = imgs[0].shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        return [img[top:top + size, left:left + size] for img in imgs]
    return list(imgs)

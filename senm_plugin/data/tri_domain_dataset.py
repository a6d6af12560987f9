"""The three-domain training set of SeNM-VAE: paired (clean + noisy), source (clean only), target (noisy only)."""
import math
from os import path as osp

import numpy as np
from torch.utils import data as data

from basicsr.utils import FileClient, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from senm_plugin.data.image_io import ImageError, crop_for_phase, list_images
from senm_plugin.data.pair_source import read_image, read_meta_names, scan_folder_pair, scan_lmdb, scan_lmdb_pair
from senm_plugin.data.schedule import domain_schedule
from senm_plugin.domains import DOMAIN_NAMES, PAIRED

# per domain: the option keys of its gt and lq roots (source and target have one root)
_ROOT_KEYS = (('dataroot_paired_gt', 'dataroot_paired_lq'), ('dataroot_source', ) * 2, ('dataroot_target', ) * 2)
_CLIENT_KEYS = (('paired_gt', 'paired_lq'), ('source', 'source'), ('target', 'target'))


@DATASET_REGISTRY.register()
class TriDomainDataset(data.Dataset):
    """Paired / source / target samples for SeNM-VAE, read from folders or BasicSR LMDBs.

    Options (BasicSR style): ``dataroot_paired_gt`` + ``dataroot_paired_lq`` (paired clean/noisy, matched by name),
    ``dataroot_source`` (clean only), ``dataroot_target`` (noisy only): any domain may be left out.
    ``io_backend``: ``{type: disk}`` (folders of images; optional ``meta_info_paired`` / ``meta_info_source`` /
    ``meta_info_target`` files list the names to use, first word per line; ``meta_info_file`` is an alias of
    ``meta_info_paired``) or ``{type: lmdb}`` (each root is an LMDB; its ``meta_info.txt`` gives the keys).
    ``domain_frequency``: share of each domain in the draws, a list [paired, source, target] or a dict with those
    names (default: equal over the present domains; 0 leaves a domain out). ``gt_size`` (default 64),
    ``use_hflip``, ``use_rot`` (with both: the 8 dihedral transforms, the same for gt and lq). ``seed`` (default 0),
    ``num_samples`` (epoch length, default below). ``phase`` val/test: paired only, the full image, or a centre crop
    of ``center_crop`` pixels if that option is set.

    Returns ``gt`` (clean) and ``lq`` (noisy) as float32 RGB CHW tensors in [0, 1], ``domain`` (0 paired, 1 source,
    2 target), ``gt_path``, ``lq_path``. A source sample has no noisy image and a target sample no clean one: the
    missing image is a copy of the present one (and both paths are its path); the model's domain masks keep it out
    of every loss. Images are read as BasicSR does (grey -> 3 channels, 16-bit -> 8-bit, alpha dropped).

    Sampling: index i of an epoch is domain ``d(i)`` and item ``k(i)`` of that domain, both fixed by (seed, i)
    (``domain_schedule``): each domain holds its frequency's share of the indices, whatever its size, and by
    default the epoch is just long enough for every item of every domain to appear (10 paired samples among 48,000
    source and 48,000 target ones are repeated to a third of the epoch). BasicSR's ``EnlargedSampler`` permutes the
    indices by epoch and gives each rank a disjoint slice, so ranks draw different samples and the mix holds over
    each epoch; crops and flips use Python's ``random``, which BasicSR seeds per worker and rank from
    ``manual_seed``. BasicSR does not pass ``manual_seed`` to datasets: set ``seed`` here to change the schedule.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.phase = opt.get('phase', 'train')
        self.train = self.phase == 'train'
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.backend = self.io_backend_opt.pop('type', 'disk')
        if self.backend not in ('disk', 'lmdb'):
            raise ValueError(f'io_backend.type: "{self.backend}" is not supported; use disk or lmdb')
        self.gt_size = int(opt.get('gt_size') or 64)
        self.center_crop = opt.get('center_crop')
        self.use_hflip = bool(opt.get('use_hflip', False))
        self.use_rot = bool(opt.get('use_rot', False))
        self.file_client = None

        present = [bool(opt.get(keys[0])) for keys in _ROOT_KEYS]
        if bool(opt.get('dataroot_paired_gt')) != bool(opt.get('dataroot_paired_lq')):
            raise ValueError('dataroot_paired_gt and dataroot_paired_lq must be given together')
        if not self.train:
            if not present[PAIRED]:
                raise ValueError(f'phase {self.phase}: validation/test needs dataroot_paired_gt and dataroot_paired_lq')
            present = [True, False, False]
        if not any(present):
            raise ValueError('TriDomainDataset: give at least one of dataroot_paired_gt/_lq, dataroot_source, '
                             'dataroot_target')
        # files[d] = (gt names, lq names, gt root, lq root); names are LMDB keys or file names
        self.files = [self._scan(d) if present[d] else None for d in range(3)]
        self.sizes = [len(f[0]) if f else 0 for f in self.files]

        if self.train:
            weights = self._frequencies(present)
            self.domain, self.item = domain_schedule(self.sizes, weights, int(opt.get('seed', 0)),
                                                     opt.get('num_samples'))
        else:
            self.domain = np.zeros(self.sizes[PAIRED], dtype=np.int8)
            self.item = np.arange(self.sizes[PAIRED], dtype=np.int64)

    # ----------------------------------------------------------------------------------------------- set-up
    def _frequencies(self, present):
        freq = self.opt.get('domain_frequency')
        if freq is None:
            return [1.0 if p else 0.0 for p in present]
        if isinstance(freq, dict):
            unknown = set(map(str, freq)) - set(DOMAIN_NAMES)
            if unknown:
                raise ValueError(f'domain_frequency: unknown domain(s) {sorted(unknown)}; use {DOMAIN_NAMES}')
            freq = [freq.get(name, 0) for name in DOMAIN_NAMES]
        if len(freq) != 3:
            raise ValueError(f'domain_frequency: expected 3 values [paired, source, target], got {freq}')
        weights = [float(w) for w in freq]
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f'domain_frequency: values must be finite, >= 0 and not all 0, got {freq}')
        for d, w in enumerate(weights):
            if w > 0 and not present[d]:
                raise ValueError(f'domain_frequency gives {DOMAIN_NAMES[d]} a share {w} but {_ROOT_KEYS[d][0]} '
                                 'is not set')
        return weights

    def _scan(self, d):
        gt_key, lq_key = _ROOT_KEYS[d]
        gt_root, lq_root = self.opt[gt_key], self.opt[lq_key]
        if self.backend == 'lmdb':
            need = self.gt_size if self.train else self.center_crop
            what = 'gt_size' if self.train else 'center_crop'
            if d != PAIRED:
                gt_names = scan_lmdb(gt_root, gt_key, need, what)[0]
                return gt_names, gt_names, gt_root, gt_root
            return (*scan_lmdb_pair(gt_root, lq_root, gt_key, lq_key, need, what), gt_root, lq_root)
        meta = self.opt.get(f'meta_info_{DOMAIN_NAMES[d]}') or (self.opt.get('meta_info_file') if d == PAIRED else None)
        gt_names = self._meta_names(meta, d, gt_root) if meta else None
        if d != PAIRED:
            gt_names = gt_names or list_images(gt_root, gt_key)
            return gt_names, gt_names, gt_root, gt_root
        return (*scan_folder_pair(gt_root, lq_root, gt_key, lq_key, gt_names), gt_root, lq_root)

    @staticmethod
    def _meta_names(meta, d, root):
        names = read_meta_names(meta, f'meta_info_{DOMAIN_NAMES[d]}')
        missing = [n for n in names if not osp.isfile(osp.join(root, n))]
        if missing:
            raise FileNotFoundError(f'{meta} lists {len(missing)} file(s) missing from {root}: {missing[:5]}')
        return names

    # ----------------------------------------------------------------------------------------------- reading
    def _open(self):
        if self.backend == 'lmdb':
            # environments are shared per process and path by senm_plugin.compat (py-lmdb refuses a second open)
            clients = {client: root for d, f in enumerate(self.files) if f is not None
                       for client, root in zip(_CLIENT_KEYS[d], f[2:])}
            self.file_client = FileClient(
                'lmdb', db_paths=list(clients.values()), client_keys=list(clients), **self.io_backend_opt)
        else:
            self.file_client = FileClient('disk', **self.io_backend_opt)

    def __getitem__(self, index):
        if self.file_client is None:
            self._open()  # in the worker process: LMDB environments must not cross a fork
        d, k = int(self.domain[index]), int(self.item[index])
        gt_names, lq_names, gt_root, lq_root = self.files[d]
        gt_client, lq_client = _CLIENT_KEYS[d]
        img_gt, gt_path = read_image(self.file_client, self.backend, gt_root, gt_names[k], gt_client)
        imgs = [img_gt]
        if d == PAIRED:
            img_lq, lq_path = read_image(self.file_client, self.backend, lq_root, lq_names[k], lq_client)
            if img_lq.shape != img_gt.shape:
                raise ImageError(f'{gt_path} is {img_gt.shape[:2]} but its partner {lq_path} is {img_lq.shape[:2]}')
            imgs.append(img_lq)
        else:
            lq_path = gt_path

        # a single-domain image is transformed once and copied afterwards
        imgs = crop_for_phase(imgs, gt_path, self.train, self.gt_size, self.use_hflip, self.use_rot, self.center_crop)

        # uint8 BGR HWC -> float32 RGB CHW in [0, 1] (cropped first: converting the full image costs more)
        tensors = img2tensor([img.astype(np.float32) / 255. for img in imgs], bgr2rgb=True)
        gt = tensors[0]
        lq = tensors[1] if d == PAIRED else gt.clone()
        path_gt, path_lq = (gt_names[k], lq_names[k]) if self.backend == 'lmdb' else (gt_path, lq_path)
        return {'gt': gt, 'lq': lq, 'domain': d, 'gt_path': path_gt, 'lq_path': path_lq}

    def __len__(self):
        return len(self.domain)

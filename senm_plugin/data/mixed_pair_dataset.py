"""Paired training data drawn from several sources at set shares, e.g. SeNM-VAE synthetic pairs plus a few real ones."""
import math
from os import path as osp

import numpy as np
from torch.utils import data as data

from basicsr.utils import FileClient, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from senm_plugin.data.image_io import ImageError, crop_for_phase, list_images
from senm_plugin.data.lmdb_io import is_lmdb
from senm_plugin.data.pair_source import read_image, read_meta_names, scan_folder_pair, scan_lmdb_pair
from senm_plugin.data.schedule import domain_schedule


@DATASET_REGISTRY.register()
class MixedPairDataset(data.Dataset):
    """Clean/noisy pairs from several paired sources, each source holding a set share of every epoch.

    Options, either the two-source shorthand
        ``dataroot_synth_gt``, ``dataroot_synth_lq`` (e.g. ``basicsr generate`` output), ``dataroot_real_gt``,
        ``dataroot_real_lq`` (the few real pairs), ``real_ratio`` (share of real pairs in [0, 1], default 0.5),
        ``io_backend`` (shared) or ``io_backend_synth`` / ``io_backend_real``;
    or a list ``sources``: each ``{name, dataroot_gt, dataroot_lq, io_backend, weight, meta_info_file}`` (``weight``
    default 1; shares are weight / sum of weights; ``ratios`` [w_0, w_1, ...] overrides the weights).
    ``io_backend`` is ``{type: disk}`` (folders, pairs matched by file stem; optional ``meta_info_file`` listing the
    gt names) or ``{type: lmdb}`` (BasicSR LMDBs); ``type: auto`` (default) picks lmdb for a root holding data.mdb.
    Also ``gt_size``, ``use_hflip``, ``use_rot`` (as PairedImageDataset), ``seed`` (default 0), ``num_samples``
    (epoch length; default: just long enough for every pair of every source with a share to appear once), ``phase``.

    Index i of an epoch is source ``s(i)`` and pair ``k(i)`` of it, a deterministic function of (sizes, shares, seed)
    (``domain_schedule``, as TriDomainDataset): over an epoch source s holds exactly its share of the indices, and a
    small source repeats its pairs in turn. Crops and flips use Python's ``random`` (seeded per worker by BasicSR).
    With ``phase`` val/test, every pair of every source is returned once, whole (or ``center_crop``), in order.

    Returns ``lq`` and ``gt`` (float32 RGB CHW in [0, 1]), ``lq_path``, ``gt_path`` and ``origin`` (the index of its
    source).
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.phase = opt.get('phase', 'train')
        self.train = self.phase == 'train'
        self.gt_size = int(opt.get('gt_size') or 0)
        if self.train and self.gt_size <= 0:
            raise ValueError('MixedPairDataset: gt_size (crop size) is required for phase train')
        self.center_crop = opt.get('center_crop')
        self.use_hflip = bool(opt.get('use_hflip', False))
        self.use_rot = bool(opt.get('use_rot', False))
        self.sources = self._source_options(opt)
        # per source: dict(name, backend, backend_opt, gt_root, lq_root, gt_names, lq_names)
        self.files = [self._scan(s) for s in self.sources]
        self.sizes = [len(f['gt_names']) for f in self.files]
        self.weights = [float(s['weight']) for s in self.sources]
        if self.train:
            self.origin, self.item = domain_schedule(self.sizes, self.weights, int(opt.get('seed', 0)),
                                                     opt.get('num_samples'))
        else:
            self.origin = np.repeat(np.arange(len(self.sizes), dtype=np.int8), self.sizes)
            self.item = np.concatenate([np.arange(n, dtype=np.int64) for n in self.sizes])
        self.clients = None

    # ----------------------------------------------------------------------------------------------- set-up
    @staticmethod
    def _source_options(opt):
        shared = opt.get('io_backend')
        if opt.get('sources'):
            if any(opt.get(k) for k in ('dataroot_synth_gt', 'dataroot_real_gt', 'real_ratio')):
                raise ValueError('MixedPairDataset: give either sources or the dataroot_synth_*/dataroot_real_* '
                                 'shorthand, not both')
            sources = []
            for i, src in enumerate(opt['sources']):
                src = dict(src)
                src.setdefault('name', f'source{i}')
                src.setdefault('io_backend', shared)
                src.setdefault('weight', 1.0)
                sources.append(src)
        else:
            ratio = float(opt.get('real_ratio', 0.5))
            if not 0 <= ratio <= 1:
                raise ValueError(f'MixedPairDataset: real_ratio must be in [0, 1], got {ratio}')
            sources = []
            for name, weight in (('synth', 1 - ratio), ('real', ratio)):
                gt, lq = opt.get(f'dataroot_{name}_gt'), opt.get(f'dataroot_{name}_lq')
                if bool(gt) != bool(lq):
                    raise ValueError(f'MixedPairDataset: dataroot_{name}_gt and dataroot_{name}_lq go together')
                if not gt:
                    if weight > 0 and opt.get('real_ratio') is not None:
                        raise ValueError(f'MixedPairDataset: real_ratio {ratio} gives {name} pairs a share '
                                         f'{weight} but dataroot_{name}_gt/_lq are not set')
                    continue
                sources.append({'name': name, 'dataroot_gt': gt, 'dataroot_lq': lq, 'weight': weight,
                                'io_backend': opt.get(f'io_backend_{name}', shared),
                                'meta_info_file': opt.get(f'meta_info_{name}')})
            if not sources:
                raise ValueError('MixedPairDataset: set dataroot_synth_gt/_lq and/or dataroot_real_gt/_lq, or sources')
        ratios = opt.get('ratios')
        if ratios is not None:
            if len(ratios) != len(sources):
                raise ValueError(f'MixedPairDataset: ratios has {len(ratios)} values for {len(sources)} sources')
            for src, w in zip(sources, ratios):
                src['weight'] = w
        for src in sources:
            w = float(src['weight'])
            if not math.isfinite(w) or w < 0:
                raise ValueError(f'MixedPairDataset: weight of source {src["name"]} must be finite and >= 0, got {w}')
            for key in ('dataroot_gt', 'dataroot_lq'):
                if not src.get(key):
                    raise ValueError(f'MixedPairDataset: source {src["name"]} needs {key}')
        if sum(float(s['weight']) for s in sources) <= 0:
            raise ValueError('MixedPairDataset: the source weights are all 0')
        return sources

    def _scan(self, src):
        backend_opt = dict(src.get('io_backend') or {'type': 'auto'})
        backend = backend_opt.pop('type', 'auto')
        gt_root, lq_root, name = src['dataroot_gt'], src['dataroot_lq'], src['name']
        if backend == 'auto':
            backend = 'lmdb' if is_lmdb(gt_root) else 'disk'
        if backend not in ('disk', 'lmdb'):
            raise ValueError(f'MixedPairDataset: source {name}: io_backend type {backend!r}; use disk, lmdb or auto')
        if backend == 'lmdb':
            gt_names, lq_names = scan_lmdb_pair(gt_root, lq_root, f'{name} dataroot_gt', f'{name} dataroot_lq',
                                                self.gt_size if self.train else None)
        else:
            gt_names, meta = None, src.get('meta_info_file')
            if meta:
                wanted = {osp.splitext(n)[0] for n in read_meta_names(meta, f'{name} meta_info_file')}
                gt_names = [n for n in list_images(gt_root, f'{name} dataroot_gt') if osp.splitext(n)[0] in wanted]
            gt_names, lq_names = scan_folder_pair(gt_root, lq_root, f'{name} dataroot_gt', f'{name} dataroot_lq',
                                                  gt_names, only_partners=True)
        if not gt_names and float(src['weight']) > 0:
            raise ValueError(f'MixedPairDataset: source {name} holds no pairs')
        return {'name': name, 'backend': backend, 'backend_opt': backend_opt, 'gt_root': gt_root,
                'lq_root': lq_root, 'gt_names': gt_names, 'lq_names': lq_names}

    # ----------------------------------------------------------------------------------------------- reading
    def _open(self):
        self.clients = []
        for f in self.files:
            if f['backend'] == 'lmdb':
                # sources may share an LMDB: senm_plugin.compat shares environments per process and path
                client = FileClient(
                    'lmdb', db_paths=[f['gt_root'], f['lq_root']], client_keys=['gt', 'lq'], **f['backend_opt'])
            else:
                client = FileClient('disk', **f['backend_opt'])
            self.clients.append(client)

    def _read(self, s, k, which):
        f = self.files[s]
        img, where = read_image(self.clients[s], f['backend'], f[f'{which}_root'], f[f'{which}_names'][k], which)
        return img, (f[f'{which}_names'][k] if f['backend'] == 'lmdb' else where)

    def __getitem__(self, index):
        if self.clients is None:
            self._open()  # in the worker process: LMDB environments must not cross a fork
        s, k = int(self.origin[index]), int(self.item[index])
        img_gt, gt_path = self._read(s, k, 'gt')
        img_lq, lq_path = self._read(s, k, 'lq')
        if img_gt.shape != img_lq.shape:
            raise ImageError(f'{gt_path} is {img_gt.shape[:2]} but its partner {lq_path} is {img_lq.shape[:2]}')
        imgs = crop_for_phase([img_gt, img_lq], gt_path, self.train, self.gt_size, self.use_hflip, self.use_rot,
                              self.center_crop)
        gt, lq = img2tensor([img.astype(np.float32) / 255. for img in imgs], bgr2rgb=True)
        return {'lq': lq, 'gt': gt, 'lq_path': lq_path, 'gt_path': gt_path, 'origin': s}

    def __len__(self):
        return len(self.origin)

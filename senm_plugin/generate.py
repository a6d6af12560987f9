"""``basicsr generate``: clean/noisy training pairs made by a trained SeNM-VAE from clean images.

Each clean image x gets a degradation level and a noisy image y = SeNM-VAE translate(x, level) (z ~ q(z|x),
zn ~ p(zn|z, level), y from the decoder; the reference ``SIDD/main_translate.py``). The output is a paired set that
BasicSR's PairedImageDataset reads as it is: ``<out>/gt.lmdb`` + ``<out>/lq.lmdb`` (``--format lmdb``) or
``<out>/gt/`` + ``<out>/lq/`` PNG folders (``--format png``), plus ``<out>/manifest.json`` (the settings and each
image's key and level).

Determinism and resuming: every random draw of image i (its level, its latents) comes from generators seeded with
(seed, i) only, so the batch size, the grouping of images and an interruption change nothing (on one device type:
CPU and CUDA random streams differ, so the device type is part of the settings). Finished images are
written as PNG files (atomically) into ``<out>/gt`` and ``<out>/lq`` (PNG) or ``<out>/_staging`` (LMDB); a re-run
with the same settings skips the finished ones, and the LMDBs are built from the staged files only once every image
is there. ``manifest.json`` says ``"complete": true`` only at the very end.
"""
import argparse
import hashlib
import json
import math
import os
import sys
from os import path as osp

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml

from senm_plugin.checkpoint import CheckpointError, load_network_weights
from senm_plugin.data.fileutil import check_writable_dir, content_stamp
from senm_plugin.data.image_io import ImageError, decode_bgr8, image_hw, list_images, read_bgr8
from senm_plugin.data.lmdb_io import (LmdbBuild, finished_status, is_lmdb, key_clash, read_meta_info, remove_path,
                                      safe_key, write_json_atomic)
from senm_plugin.data.noise_sim import sample_sidd_levels
from senm_plugin.shard import Shard

MANIFEST = 'manifest.json'
STAGING = '_staging'
# independent random streams of one image, all seeded from (seed, image index, stream)
STREAM_LEVEL, STREAM_PICK, STREAM_LATENT = 0, 1, 2

DEFAULTS = {
    'model': None,
    'input': None,
    'out': None,
    'levels': 'sidd-prior',
    'level_model': None,
    'level_pick': 'random',
    'level_estimator': 'network',
    'temperature': 1.0,
    'normalize': False,
    'residual': False,
    'calibrate': None,
    'batch_size': 8,
    'seed': 0,
    'device': None,
    'format': 'lmdb',
    'network_g': None,
    'network_le': None,
    'param_key': 'params',
    'compress_level': 1,
    'overwrite': False,
}


class GenerateError(RuntimeError):
    """A generation that cannot start or go on; the message names the option or file at fault."""


# ------------------------------------------------------------------------------------------------------ image sets
class ImageSet:
    """The images of a folder or a BasicSR LMDB, by index: ``names``, output ``keys``, ``shapes`` (h, w), ``read``.

    Folders are listed in sorted order (names are file stems); an LMDB keeps its ``meta_info.txt`` order. Keys are
    the names made LMDB-safe (letters, digits, ``_``, ``-``).
    """

    def __init__(self, path, option='--input'):
        if not path:
            raise GenerateError(f'{option}: no folder or LMDB given')
        if not osp.exists(path):
            raise GenerateError(f'{option}: {path} does not exist')
        self.path, self.option = path, option
        self._env = None
        try:
            if is_lmdb(path):
                entries = read_meta_info(path, option)
                self.files = None
                self.names = [k for k, _ in entries]
                self.shapes = [shape[:2] for _, shape in entries]
            else:
                self.files = [osp.join(path, n) for n in list_images(path, option)]
                self.names = [osp.splitext(osp.basename(f))[0] for f in self.files]
                self.shapes = [image_hw(f) for f in self.files]
        except (ValueError, FileNotFoundError) as err:
            raise GenerateError(str(err)) from err
        self.keys = [safe_key(n) for n in self.names]
        clash = key_clash(self.names, [osp.basename(f) for f in self.files] if self.files else None)
        if clash:
            raise GenerateError(f'{option}: {clash[0]} and {clash[1]} in {path} give the same LMDB key {clash[2]!r} '
                                '(the extension is dropped, characters other than [A-Za-z0-9_-] become _); '
                                'rename one')

    def __len__(self):
        return len(self.names)

    def read(self, i):
        """Image ``i`` as uint8 BGR (H, W, 3) (BasicSR's decoding: grey -> 3 channels, 16-bit -> 8-bit)."""
        if self.files is not None:
            return read_bgr8(self.files[i])
        if self._env is None:
            import lmdb
            self._env = lmdb.open(self.path, readonly=True, lock=False, readahead=False)
        with self._env.begin(write=False) as txn:
            content = txn.get(self.names[i].encode('ascii'))
        return decode_bgr8(content, f'{self.path}:{self.names[i]}')

    def where(self, i):
        """The file or LMDB key of image ``i``, for messages."""
        return self.files[i] if self.files is not None else f'{self.path}:{self.names[i]}'

    def close(self):
        if self._env is not None:
            self._env.close()
            self._env = None


def shape_batches(shapes, indices, batch_size):
    """Batches of at most ``batch_size`` indices sharing one (h, w), in index order within each size."""
    groups = {}
    for i in indices:
        groups.setdefault(tuple(shapes[i]), []).append(i)
    batches = []
    for group in groups.values():
        batches += [group[s:s + batch_size] for s in range(0, len(group), batch_size)]
    return sorted(batches, key=lambda b: b[0])


# ------------------------------------------------------------------------------------------------------ networks
def network_options(value, key, what):
    """Network options from a dict, a JSON string or a YAML option file (its ``key`` section); ``type`` dropped."""
    if value is None or value == '':
        return {}
    if isinstance(value, str):
        if osp.isfile(value):
            with open(value) as f:
                loaded = yaml.safe_load(f) or {}
            if key not in loaded:
                raise GenerateError(f'{what}: option file {value} has no "{key}" section')
            value = loaded[key]
        else:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise GenerateError(f'{what}: neither an existing option file nor JSON: {value!r} ({err})') from None
    if not isinstance(value, dict):
        raise GenerateError(f'{what}: expected a mapping of network options, got {value!r}')
    value = dict(value)
    value.pop('type', None)
    return value


def _build(cls, opt, what):
    try:
        return cls(**opt)
    except TypeError as err:
        raise GenerateError(f'{what}: invalid options for {cls.__name__}: {err}') from None


def load_senmvae(path, network_opt=None, device='cpu', param_key='params', option='--model'):
    """SeNMVAE built from ``network_opt`` (paper defaults if empty) with the weights of ``path``, in eval mode.

    ``path`` is a BasicSR checkpoint (``{'params': ...}``) or a bare state dict as the reference saves it.
    """
    from senm_plugin.archs.senmvae_arch import SeNMVAE
    if not path:
        raise GenerateError(f'{option}: no SeNM-VAE checkpoint given')
    if not osp.isfile(path):
        raise GenerateError(f'{option}: checkpoint {path} not found')
    net = _build(SeNMVAE, network_options(network_opt, 'network_g', '--network-opt'), '--network-opt')
    try:
        load_network_weights(net, path, param_key=param_key, strict=True)
    except CheckpointError as err:
        raise GenerateError(f'{option}: {err}\n(Network options in use: {network_opt or "paper defaults"}; '
                            f'set them with --network-opt.)') from None
    return net.to(device).eval()


def load_level_net(path, network_opt=None, device='cpu', param_key='params', option='--level-model'):
    """NoiseLevelNet with the weights of ``path`` (BasicSR checkpoint or bare state dict), in eval mode."""
    from senm_plugin.archs.noise_level_arch import NoiseLevelNet
    if not osp.isfile(path):
        raise GenerateError(f'{option}: checkpoint {path} not found')
    net = _build(NoiseLevelNet, network_options(network_opt, 'network_le', '--level-network-opt'),
                 '--level-network-opt')
    try:
        load_network_weights(net, path, param_key=param_key, strict=True)
    except CheckpointError as err:
        raise GenerateError(f'{option}: {err}') from None
    return net.to(device).eval()


def level_model_beside(model_path):
    """The noise-level network saved with a SeNM-VAE checkpoint: ``net_g_<iter>.pth`` -> ``net_le_<iter>.pth``."""
    folder, name = osp.split(model_path)
    if not name.startswith('net_g'):
        return None
    return osp.join(folder, 'net_le' + name[len('net_g'):])


def find_level_model(level_model, model, levels_spec):
    """The noise-level network file for ``--levels estimate:``: ``--level-model``, else the one beside ``--model``."""
    path = level_model or level_model_beside(model)
    if not path or not osp.isfile(path):
        raise GenerateError(f'--levels {levels_spec}: the noise-level network was not found '
                            f'{"at " + path if path else "beside --model"}; pass --level-model (the '
                            'net_le_<iter>.pth saved with the SeNM-VAE checkpoint), or use --level-estimator highpass')
    return path


def network_levels(level_path, source, network_le, network_g, batch_size=8, device='cpu', param_key='params'):
    """The noise-level network's estimates for the real noisy images of ``source`` (a folder or an LMDB)."""
    real = ImageSet(source, '--levels estimate')
    level_net = load_level_net(level_path, level_net_options(network_le, network_g), device, param_key)
    estimates = estimate_levels(level_net, real, int(batch_size), device)
    real.close()
    return estimates


def down_factor(net):
    """Height and width of SeNMVAE inputs must be multiples of this (one 2x step per resolution change)."""
    return 2**(len(net.num_levels) - 1 + net.num_down)


# ------------------------------------------------------------------------------------------------------ sampling
def image_seed(seed, index, stream):
    """A 63-bit seed for one random stream of image ``index``, fixed by (seed, index, stream)."""
    return int(np.random.SeedSequence([seed, index, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def pad_to_multiple(x, multiple):
    """Pad (N, C, H, W) at the bottom and right to multiples of ``multiple`` (reflect; replicate if too small)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = 'reflect' if ph < h and pw < w else 'replicate'
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def bgr8_to_tensor(imgs, device):
    """uint8 BGR HWC images of one size -> (N, 3, H, W) float32 RGB in [0, 1]."""
    arr = np.stack([img[..., ::-1] for img in imgs]).astype(np.float32) / 255.
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).to(device)


def tensor_to_bgr8(t):
    """(N, 3, H, W) RGB in [0, 1] -> list of uint8 BGR HWC (clamp, x255, round: the reference's tensor2uint)."""
    arr = (t.detach().clamp(0, 1) * 255.).round().to(torch.uint8).cpu().numpy()
    return [np.ascontiguousarray(a.transpose(1, 2, 0)[..., ::-1]) for a in arr]


@torch.no_grad()
def synthesize_batch(net, imgs, levels, seeds, temperature=1.0, normalize=False, device='cpu', residual=False,
                     names=None):
    """Noisy versions of same-size uint8 BGR images; image b uses level ``levels[b]`` and seed ``seeds[b]``.

    A non-finite network output (e.g. at an extreme temperature or level) raises GenerateError naming the images
    (``names``, default their positions) instead of being written as black pixels.

    Odd sizes are reflect-padded to what the network needs and cropped back. ``normalize`` shifts each channel of
    the generated image to the clean image's mean (reference ``main_translate.py --normalize``); ``residual`` adds
    only rendered noise to the clean image (``SeNMVAE.translate``).
    """
    clean = bgr8_to_tensor(imgs, device)
    h, w = clean.shape[-2:]
    gens = [torch.Generator(device=clean.device).manual_seed(int(s)) for s in seeds]
    level = torch.as_tensor(np.asarray(levels, dtype=np.float32), device=device)
    noisy = net.translate(pad_to_multiple(clean, down_factor(net)), level, temperature=temperature, generators=gens,
                          residual=residual)
    noisy = noisy[..., :h, :w]
    bad = (~torch.isfinite(noisy)).flatten(1).any(dim=1).nonzero().flatten().tolist()
    if bad:
        named = ', '.join(str(names[b] if names is not None else b) for b in bad)
        raise GenerateError(f'the network gave non-finite values for {named} (levels '
                            f'{", ".join(f"{float(levels[b]):.4g}" for b in bad)}; temperature {temperature:g}); '
                            'nothing was written for them. Check --temperature and --levels, or the checkpoint.')
    if normalize:
        noisy = noisy - noisy.mean(dim=(2, 3), keepdim=True) + clean.mean(dim=(2, 3), keepdim=True)
    return tensor_to_bgr8(noisy)


def synthesize(net, imgs, levels, seed=0, temperature=1.0, normalize=False, batch_size=8, device='cpu', indices=None,
               residual=False):
    """Noisy versions of a list of uint8 BGR images (any sizes); image k uses the seeds of index ``indices[k]``."""
    indices = list(range(len(imgs))) if indices is None else list(indices)
    out = [None] * len(imgs)
    for batch in shape_batches([img.shape[:2] for img in imgs], range(len(imgs)), batch_size):
        seeds = [image_seed(seed, indices[k], STREAM_LATENT) for k in batch]
        noisy = synthesize_batch(net, [imgs[k] for k in batch], [levels[k] for k in batch], seeds, temperature,
                                 normalize, device, residual)
        for k, img in zip(batch, noisy):
            out[k] = img
    return out


# ------------------------------------------------------------------------------------------------------ levels
def parse_levels(spec):
    """``sidd-prior`` | ``fixed:<level>`` | ``estimate:<noisy folder or LMDB>`` -> (mode, argument)."""
    spec = str(spec).strip()
    if spec == 'sidd-prior':
        return 'sidd-prior', None
    mode, _, arg = spec.partition(':')
    if mode == 'fixed':
        try:
            value = float(arg)
        except ValueError:
            value = float('nan')
        if not math.isfinite(value) or value < 0:
            raise GenerateError(f'--levels {spec}: fixed needs a finite level >= 0 (in [0, 1] image units), '
                                'e.g. fixed:0.03')
        if value > 1:
            raise GenerateError(f'--levels {spec}: levels are noise stds in [0, 1] image units (fixed:0.03 is about '
                                f'7.7 8-bit levels); for {value:g} 8-bit levels use fixed:{value / 255:.4g}')
        return 'fixed', value
    if mode == 'estimate' and arg:
        return 'estimate', arg
    raise GenerateError(f'--levels {spec!r}: use sidd-prior, fixed:<level> (e.g. fixed:0.03) or '
                        'estimate:<folder or LMDB of real noisy images>')


@torch.no_grad()
def estimate_levels(level_net, images, batch_size=8, device='cpu'):
    """The noise-level network's estimate (>= 0) for every image of an ImageSet (whole images, batched by size)."""
    est = np.zeros(len(images))
    for batch in shape_batches(images.shapes, range(len(images)), batch_size):
        x = bgr8_to_tensor([images.read(i) for i in batch], device)
        est[batch] = level_net(x).reshape(-1).double().cpu().numpy()
    if (est < 0).any():
        print(f'basicsr generate: warning: the noise-level network predicted a negative level for '
              f'{int((est < 0).sum())} of {len(est)} images of {images.path}; they count as 0')
    return np.clip(est, 0, None)


def highpass_levels(cfg, source):
    """``--level-estimator highpass``: levels of the real noisy images ``source`` from the high-pass estimate, scaled
    on the ``--calibrate`` pairs (``senm_plugin.noise.level_estimate``); returns (levels in [0, 1] units, scale)."""
    from senm_plugin.noise.level_estimate import fit_scale, highpass_sigma
    if not cfg['calibrate'] or len(cfg['calibrate']) != 2:
        raise GenerateError('--level-estimator highpass needs --calibrate CLEAN NOISY (real pairs to scale it on)')
    try:
        scale = fit_scale(*read_calibration_pairs(cfg))
        real = ImageSet(source, '--levels estimate')
        levels = np.array([scale * highpass_sigma(real.read(i)) / 255.0 for i in range(len(real))])
    except ValueError as err:
        raise GenerateError(f'--level-estimator highpass: {err}') from err
    real.close()
    print(f'--level-estimator highpass: scale {scale:.3g} fitted on the --calibrate pairs; levels of {len(levels)} '
          f'images {levels.min() * 255:.2f}-{levels.max() * 255:.2f} (8-bit)', flush=True)
    return levels, scale


def plan_levels(mode, arg, num, seed, estimates=None, pick='random'):
    """One level per image: fixed; drawn from the SIDD prior; or taken from real images' estimates.

    With estimates, ``pick='random'`` gives image i the estimate of a real image drawn uniformly (fixed by
    (seed, i)), so the synthetic levels follow the real set's level distribution; ``pick='mean'`` gives every image
    the mean estimate.
    """
    if mode == 'fixed':
        return np.full(num, float(arg))
    if mode == 'sidd-prior':
        return np.array([sample_sidd_levels(1, np.random.default_rng(image_seed(seed, i, STREAM_LEVEL)))[0]
                         for i in range(num)])
    if mode == 'estimate':
        estimates = np.asarray(estimates, dtype=np.float64)
        if pick == 'mean':
            return np.full(num, float(estimates.mean()))
        if pick != 'random':
            raise GenerateError(f'--level-pick {pick!r}: use random or mean')
        return np.array([estimates[np.random.default_rng(image_seed(seed, i, STREAM_PICK)).integers(len(estimates))]
                         for i in range(num)])
    raise GenerateError(f'unknown level mode {mode!r}')


# ------------------------------------------------------------------------------------------------------ run
def file_sha256(path):
    """SHA-256 of a file's bytes (identifies checkpoints in the manifest)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _write_png(path, img, compress_level):
    ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)])
    if not ok:
        raise GenerateError(f'cannot encode {path} as PNG')
    tmp = f'{path}.tmp'
    with open(tmp, 'wb') as f:
        f.write(buf.tobytes())
    os.replace(tmp, path)


def resolve_device(name):
    """A torch device from 'cpu' / 'cuda' / 'cuda:N' / None (CUDA when available)."""
    if not name:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise GenerateError(f'--device {name}: CUDA is not available on this machine; use --device cpu')
    return device


def _check_config(cfg):
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise GenerateError(f'unknown option(s) {unknown}; known: {sorted(DEFAULTS)}')
    for key in ('model', 'input', 'out'):
        if not cfg[key]:
            raise GenerateError(f'--{key} is required')
    problem = check_writable_dir(cfg['out'], '--out')
    if problem:
        raise GenerateError(problem)
    if cfg['format'] not in ('lmdb', 'png'):
        raise GenerateError(f'--format {cfg["format"]!r}: use lmdb or png')
    if not 0 <= int(cfg['compress_level']) <= 9:
        raise GenerateError(f'--compress-level must be 0 (fastest) to 9 (smallest), got {cfg["compress_level"]}')
    check_sampling_options(cfg['batch_size'], cfg['seed'], cfg['temperature'], cfg['residual'], allow_auto=True)
    if cfg['temperature'] == 'auto' and (not cfg['calibrate'] or len(cfg['calibrate']) != 2):
        raise GenerateError('--temperature auto needs --calibrate CLEAN NOISY (real pairs to fit it on)')


def check_sampling_options(batch_size, seed, temperature, residual, allow_auto=False):
    """Range checks of the options ``basicsr generate`` and ``basicsr evaluate`` share; raises GenerateError
    naming the option."""
    if int(batch_size) < 1:
        raise GenerateError(f'--batch-size must be >= 1, got {batch_size}')
    if int(seed) < 0:
        raise GenerateError(f'--seed must be >= 0, got {seed}')
    if residual not in (False, None, 'clean', 'mean', 'level'):
        raise GenerateError(f'--residual must be clean, mean or level, got {residual!r}')
    if allow_auto and temperature == 'auto':
        return
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = float('nan')
    if not math.isfinite(value) or value < 0:
        raise GenerateError(f'--temperature must be {"auto or " if allow_auto else ""}a finite number >= 0, '
                            f'got {temperature}')


LOCK = '.generate.lock'


def _outputs(out, fmt):
    if fmt == 'png':
        return osp.join(out, 'gt'), osp.join(out, 'lq'), out
    return osp.join(out, 'gt.lmdb'), osp.join(out, 'lq.lmdb'), osp.join(out, STAGING)


def _prepare_out(out, fingerprint, fmt, overwrite, inputs=()):
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
            if osp.exists(target) and _overlaps(target, inp):
                raise GenerateError(f'--overwrite would delete {target}, which holds this run\'s input {inp}; '
                                    'nothing was deleted. Write to another --out')
    for target in targets:
        remove_path(target)
    return None


def _overlaps(a, b):
    """Whether paths ``a`` and ``b`` are the same or one lies inside the other."""
    a, b = osp.realpath(a), osp.realpath(b)
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


def run_generate(cfg, progress=True, _stop_after=None):
    """Generate a paired set as ``cfg`` says (the keys of DEFAULTS); returns the manifest dict.

    ``_stop_after`` stops after that many new images without finishing (to test resuming).
    """
    cfg = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    _check_config(cfg)
    shard = Shard()  # under torchrun: this rank's share of the images
    held = []  # the output folder's lock, once taken
    try:
        return _run_generate(cfg, shard, progress, _stop_after, held)
    finally:
        shard.close()
        for lock in held:
            _unlock_out(lock)


def _lock_out(out):
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


def _unlock_out(f):
    os.remove(f.name)  # still holding the lock: nobody else can have taken it meanwhile
    f.close()


def _run_generate(cfg, shard, progress, _stop_after, held):
    device = shard.device(resolve_device(cfg['device']))
    mode, arg = parse_levels(cfg['levels'])
    seed, fmt, out = int(cfg['seed']), cfg['format'], cfg['out']
    images = ImageSet(cfg['input'], '--input')
    net = load_senmvae(cfg['model'], cfg['network_g'], device, cfg['param_key'])
    calibration = None
    if cfg['temperature'] == 'auto':
        cfg['temperature'], calibration = shard.share(calibrate_temperature(net, cfg, seed, device)
                                                      if shard.main else None)

    settings = {
        'model': osp.abspath(cfg['model']),
        'model_sha256': file_sha256(cfg['model']),
        'network_g': network_options(cfg['network_g'], 'network_g', '--network-opt'),
        'input': osp.abspath(cfg['input']),
        'levels': cfg['levels'],
        'temperature': float(cfg['temperature']),
        'normalize': bool(cfg['normalize']),
        'residual': cfg['residual'] or False,
        'seed': seed,
        'format': fmt,
        'compress_level': int(cfg['compress_level']),
        'rng_device': device.type,  # CPU and CUDA random streams differ
    }
    if calibration is not None:
        settings['calibration'] = calibration
    estimates = None
    if mode == 'estimate' and cfg['level_estimator'] == 'highpass':
        if shard.main:
            estimates, scale = highpass_levels(cfg, arg)
        estimates, scale = shard.share((estimates, scale) if shard.main else None)
        settings.update(level_estimator='highpass', level_scale=scale, level_pick=cfg['level_pick'])
    elif mode == 'estimate':
        level_path = find_level_model(cfg['level_model'], cfg['model'], cfg['levels'])
        if shard.main:
            estimates = network_levels(level_path, arg, cfg['network_le'], cfg['network_g'], cfg['batch_size'], device,
                                       cfg['param_key'])
        estimates = shard.share(estimates)
        settings.update(level_model=osp.abspath(level_path), level_model_sha256=file_sha256(level_path),
                        level_pick=cfg['level_pick'])
    if estimates is not None:
        settings['estimates'] = {'source': osp.abspath(arg), 'count': len(estimates),
                                 'mean': float(estimates.mean()), 'min': float(estimates.min()),
                                 'max': float(estimates.max())}
    levels = plan_levels(mode, arg, len(images), seed, estimates, cfg['level_pick'])
    # checkpoints count by content (their sha256), not by path: a moved checkpoint still resumes
    identity = {k: v for k, v in settings.items() if k not in ('model', 'level_model')}
    content = content_stamp(images.files if images.files is not None else
                            [osp.join(images.path, n) for n in ('data.mdb', 'meta_info.txt')])
    fingerprint = hashlib.sha256(json.dumps([identity, images.names, content],
                                            sort_keys=True).encode()).hexdigest()[:16]

    os.makedirs(out, exist_ok=True)
    if shard.main:
        held.append(_lock_out(out))
    inputs = [cfg['input']] + ([arg] if mode == 'estimate' else []) + list(cfg['calibrate'] or [])
    previous = _prepare_out(out, fingerprint, fmt, bool(cfg['overwrite']), inputs) if shard.main else None
    gt_root, lq_root, stage = _outputs(out, fmt)
    manifest = {
        'tool': 'basicsr generate',
        'complete': False,
        'fingerprint': fingerprint,
        'settings': settings,
        'format': fmt,
        'dataroot_gt': osp.abspath(gt_root),
        'dataroot_lq': osp.abspath(lq_root),
        'count': len(images),
        'images': [{'key': k, 'name': n, 'index': i, 'level': float(lv), 'size': list(map(int, s))}
                   for i, (k, n, lv, s) in enumerate(zip(images.keys, images.names, levels, images.shapes))],
    }
    if shard.share(bool(previous and previous.get('complete') and _finished(out, fmt, images.keys, fingerprint))
                   if shard.main else None):
        if shard.main:
            remove_path(osp.join(out, STAGING))
            print(f'basicsr generate: {out} is already complete ({len(images)} pairs)')
        return previous or manifest
    stage_gt, stage_lq = osp.join(stage, 'gt'), osp.join(stage, 'lq')
    if shard.main:
        write_json_atomic(osp.join(out, MANIFEST), manifest)
        os.makedirs(stage_gt, exist_ok=True)
        os.makedirs(stage_lq, exist_ok=True)
        for folder in (stage_gt, stage_lq):
            for name in os.listdir(folder):
                if name.endswith('.tmp'):
                    os.remove(osp.join(folder, name))  # left by an interrupted write
    shard.barrier()

    def done(i):
        key = images.keys[i]
        return osp.isfile(osp.join(stage_gt, key + '.png')) and osp.isfile(osp.join(stage_lq, key + '.png'))

    mine = shard.mine(range(len(images)))
    todo = [i for i in mine if not done(i)]
    if shard.world > 1:
        print(f'basicsr generate: rank {shard.rank} of {shard.world}: {len(todo)} of its {len(mine)} images to do '
              f'({len(images)} in all)', flush=True)
    bar = None
    if progress and shard.main:  # rank 0's share stands for the whole run's progress
        from tqdm import tqdm
        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc='generate', unit='img')
    written = 0
    for batch in shape_batches(images.shapes, todo, int(cfg['batch_size'])):
        if _stop_after is not None and written >= _stop_after:
            break
        clean = [images.read(i) for i in batch]
        noisy = synthesize_batch(net, clean, levels[batch], [image_seed(seed, i, STREAM_LATENT) for i in batch],
                                 float(cfg['temperature']), bool(cfg['normalize']), device, cfg['residual'] or False,
                                 names=[images.names[i] for i in batch])
        for i, x, y in zip(batch, clean, noisy):
            key = images.keys[i]
            _write_png(osp.join(stage_gt, key + '.png'), x, cfg['compress_level'])
            _write_png(osp.join(stage_lq, key + '.png'), y, cfg['compress_level'])  # written last: marks i done
        written += len(batch)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    images.close()
    shard.barrier()
    if not shard.main:
        return manifest  # rank 0 checks the whole output, builds the LMDBs and completes the manifest
    missing = [i for i in range(len(images)) if not done(i)]
    if missing:
        print(f'basicsr generate: stopped with {len(missing)} of {len(images)} images left; run again to resume')
        return manifest

    if fmt == 'lmdb':
        for name, src in (('gt', stage_gt), ('lq', stage_lq)):
            if finished_status(osp.join(out, f'{name}.lmdb'), fingerprint) == 'done':
                continue
            build = LmdbBuild(out, name, fingerprint, compress_level=int(cfg['compress_level']))
            try:
                for key, (h, w) in zip(images.keys, images.shapes):
                    with open(osp.join(src, key + '.png'), 'rb') as f:
                        build.put(key, f.read(), (int(h), int(w), 3))
                build.finish()
            except BaseException:
                build.abort()
                raise
    manifest['complete'] = True
    write_json_atomic(osp.join(out, MANIFEST), manifest)
    if fmt == 'lmdb':
        remove_path(stage)
    print(f'basicsr generate: wrote {len(images)} pairs: gt {gt_root}, lq {lq_root}, '
          f'manifest {osp.join(out, MANIFEST)}')
    return manifest


def read_calibration_pairs(cfg):
    """The real pairs of ``--calibrate CLEAN NOISY`` (matched by name) as two lists of uint8 BGR images."""
    clean_set, noisy_set = ImageSet(cfg['calibrate'][0], '--calibrate'), ImageSet(cfg['calibrate'][1], '--calibrate')
    noisy_index = {k: i for i, k in enumerate(noisy_set.keys)}
    common = [(i, noisy_index[k]) for i, k in enumerate(clean_set.keys) if k in noisy_index]
    if not common:
        raise GenerateError(f'--calibrate: no image of {cfg["calibrate"][0]} has a namesake in {cfg["calibrate"][1]}')
    clean = [clean_set.read(i) for i, _ in common]
    noisy = [noisy_set.read(j) for _, j in common]
    for (i, _), x, y in zip(common, clean, noisy):
        if x.shape != y.shape:
            raise GenerateError(f'--calibrate: {clean_set.where(i)} is {x.shape[:2]} but its noisy image '
                                f'{y.shape[:2]}')
    clean_set.close()
    noisy_set.close()
    return clean, noisy


def calibrate_temperature(net, cfg, seed, device):
    """``--temperature auto``: fit it on the real pairs ``--calibrate CLEAN NOISY``; returns (value, facts)."""
    from senm_plugin.noise.calibration import fit_temperature
    clean, noisy = read_calibration_pairs(cfg)
    temperature, facts = fit_temperature(net, clean, noisy, cfg['residual'] or False, seed, device)
    facts.update(pairs=len(clean), clean=osp.abspath(cfg['calibrate'][0]), noisy=osp.abspath(cfg['calibrate'][1]),
                 temperature=temperature)
    print(f'--temperature auto: {temperature:g}, the lowest AKLD ({facts["akld_at_fit"]:.4f}) on {len(clean)} pairs '
          f'(noise std {facts["reached_std_8bit"]:.2f}, real {facts["target_std_8bit"]:.2f})', flush=True)
    return temperature, facts


def level_net_options(network_le, network_g):
    """network_le options; without them, the network_le of the option file given as --network-opt (if any)."""
    if network_le is None and isinstance(network_g, str) and osp.isfile(network_g):
        with open(network_g) as f:
            return (yaml.safe_load(f) or {}).get('network_le')
    return network_le


def _finished(out, fmt, keys, fingerprint):
    gt_root, lq_root, _ = _outputs(out, fmt)
    if fmt == 'lmdb':
        return all(finished_status(p, fingerprint) == 'done' for p in (gt_root, lq_root))
    return all(osp.isfile(osp.join(root, k + '.png')) for root in (gt_root, lq_root) for k in keys)


# ------------------------------------------------------------------------------------------------------ command line
def _parser():
    p = argparse.ArgumentParser(
        prog='basicsr generate',
        description='Make clean/noisy training pairs from clean images with a trained SeNM-VAE. Every option can '
        'also come from a YAML file (-opt), under the same name with underscores; flags override it.')
    p.add_argument('-opt', '--opt', dest='opt_file', help='YAML option file with the keys below')
    p.add_argument('--model', help='SeNM-VAE checkpoint: BasicSR net_g_<iter>.pth or a bare state dict')
    p.add_argument('--input', help='clean images: folder or BasicSR LMDB')
    p.add_argument('--out', help='output folder (gt/lq LMDBs or PNG folders, manifest.json)')
    p.add_argument('--levels', help='sidd-prior (default) | fixed:<level> | estimate:<real noisy folder or LMDB>')
    p.add_argument('--level-model', help='noise-level net checkpoint for estimate: (default: net_le_<iter>.pth '
                   'beside --model)')
    p.add_argument('--level-estimator', choices=('network', 'highpass'),
                   help='estimate: levels from the noise-level network saved with the model (default, as the paper) '
                   'or from a high-pass estimate scaled on the --calibrate pairs (follows levels beyond the pairs\')')
    p.add_argument('--level-pick', choices=('random', 'mean'),
                   help='estimate: give each image a random real image\'s level (default) or the mean level')
    p.add_argument('--temperature', type=_temperature,
                   help='scales the degradation latents (default 1.0); auto: the temperature whose noise is closest '
                   'to the noise of the --calibrate pairs (lowest AKLD)')
    p.add_argument('--calibrate', nargs=2, metavar=('CLEAN', 'NOISY'),
                   help='real pairs (folders or LMDBs, matched by name) for --temperature auto, e.g. the paired domain')
    p.add_argument('--normalize', action='store_true', default=None,
                   help='shift each generated channel to the clean image\'s mean')
    p.add_argument('--residual', choices=('clean', 'mean', 'level'),
                   help='add only rendered noise to the clean image: the noisy rendering of z minus its clean one '
                   '(clean) or minus the rendering at the mean degradation latents (mean); level: as mean, scaled to '
                   'std = the image\'s noise level; default: off, as the paper')
    p.add_argument('--batch-size', type=int, help='images per forward pass (default 8)')
    p.add_argument('--seed', type=int, help='seed of levels and latents (default 0)')
    p.add_argument('--device', help='cpu | cuda | cuda:N (default: cuda when available)')
    p.add_argument('--format', choices=('lmdb', 'png'), help='output format (default lmdb)')
    p.add_argument('--network-opt', dest='network_g', metavar='JSON|YML',
                   help='SeNMVAE options: JSON (e.g. \'{"num_feat": 32}\') or an option file whose network_g is used '
                   '(default: the paper configuration)')
    p.add_argument('--level-network-opt', dest='network_le', metavar='JSON|YML',
                   help='NoiseLevelNet options: JSON or an option file whose network_le is used (default: the '
                   'network_le of the --network-opt option file, else the paper configuration)')
    p.add_argument('--param-key', help='checkpoint entry holding the weights (default params)')
    p.add_argument('--compress-level', type=int, help='PNG compression level 0-9 (default 1, as BasicSR)')
    p.add_argument('--overwrite', action='store_true', default=None,
                   help='replace an output made with other settings')
    return p


def _temperature(value):
    return 'auto' if value == 'auto' else float(value)


def load_option_file(path):
    """The options of a YAML file for ``basicsr generate`` (dashes in keys read as underscores)."""
    if not osp.isfile(path):
        raise GenerateError(f'-opt: option file {path} not found')
    with open(path) as f:
        loaded = yaml.safe_load(f) or {}
    if not isinstance(loaded, dict):
        raise GenerateError(f'-opt: {path} does not hold a mapping of options')
    return {str(k).replace('-', '_'): v for k, v in loaded.items()}


def main(argv=None):
    """Entry point of ``basicsr generate``; returns the exit code."""
    args = vars(_parser().parse_args(argv))
    opt_file = args.pop('opt_file')
    try:
        cfg = load_option_file(opt_file) if opt_file else {}
        cfg.update({k: v for k, v in args.items() if v is not None})
        run_generate(cfg)
    except (GenerateError, ImageError) as err:
        print(f'basicsr generate: error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

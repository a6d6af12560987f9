"""A trained SeNM-VAE (and its noise-level network) as a noise model: loading checkpoints with the options they were
trained with, and sampling noisy versions of uint8 images, padded and batched as the network needs.

Sampling is the reference's ``SIDD/main_translate.py``: z ~ q(z|x), zn ~ p(zn|z, level), y from the decoder.
"""
import json
import math
from os import path as osp

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from senm_plugin.checkpoint import CheckpointError, load_network_weights
from senm_plugin.data.image_set import shape_batches
from senm_plugin.errors import GenerateError
from senm_plugin.noise.seeds import STREAM_LATENT, image_seed


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


def build_network(cls, opt, what):
    """``cls(**opt)``, with bad options reported as GenerateError naming ``what``."""
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
    net = build_network(SeNMVAE, network_options(network_opt, 'network_g', '--network-opt'), '--network-opt')
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
    net = build_network(NoiseLevelNet, network_options(network_opt, 'network_le', '--level-network-opt'),
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


def level_net_options(network_le, network_g):
    """network_le options; without them, the network_le of the option file given as --network-opt (if any)."""
    if network_le is None and isinstance(network_g, str) and osp.isfile(network_g):
        with open(network_g) as f:
            return (yaml.safe_load(f) or {}).get('network_le')
    return network_le


def down_factor(net):
    """Height and width of SeNMVAE inputs must be multiples of this (one 2x step per resolution change)."""
    return 2**(len(net.num_latent_layers) - 1 + net.num_down)


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


def resolve_device(name):
    """A torch device from 'cpu' / 'cuda' / 'cuda:N' / None (CUDA when available)."""
    if not name:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise GenerateError(f'--device {name}: CUDA is not available on this machine; use --device cpu')
    return device


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

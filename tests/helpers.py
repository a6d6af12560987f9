"""Helpers the tests share: tiny image data written by the tests themselves, tiny networks saved as checkpoints and a
runner for the ``basicsr`` command (the fixtures that use them are in ``conftest.py``)."""
import os
import subprocess
import sys

import cv2
import numpy as np

import senm_plugin  # noqa: F401  (makes basicsr importable and registers the plugin)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_pairs(root, num=4, size=32, sigma=15.0, seed=0, ext='.png'):
    """Write ``num`` clean/noisy pairs as ``root/gt/NNN.png`` and ``root/lq/NNN.png``; returns (gt_dir, lq_dir).

    Clean images are smooth colour gradients with a few edges; noisy ones add Gaussian noise of std ``sigma``.
    """
    rng = np.random.default_rng(seed)
    gt_dir, lq_dir = os.path.join(root, 'gt'), os.path.join(root, 'lq')
    os.makedirs(gt_dir, exist_ok=True)
    os.makedirs(lq_dir, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    for i in range(num):
        phase = rng.uniform(0, 2 * np.pi, 3)
        clean = np.stack([128 + 100 * np.sin(2 * np.pi * (xx + yy * (c + 1) / 3) + phase[c]) for c in range(3)], -1)
        clean[size // 3:size // 2, :] *= 0.6
        noisy = clean + rng.normal(0, sigma, clean.shape)
        name = f'{i:03d}{ext}'
        cv2.imwrite(os.path.join(gt_dir, name), np.clip(clean, 0, 255).round().astype(np.uint8))
        cv2.imwrite(os.path.join(lq_dir, name), np.clip(noisy, 0, 255).round().astype(np.uint8))
    return gt_dir, lq_dir


def folder_to_lmdb(folder, lmdb_path):
    """Pack a folder of PNGs into a BasicSR LMDB (keys are file names without extension)."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    names = sorted(os.listdir(folder))
    make_lmdb_from_imgs(
        folder, lmdb_path, names, [os.path.splitext(n)[0] for n in names], n_thread=1, multiprocessing_read=False)
    return lmdb_path


def run_basicsr(args, cwd, timeout=600, env_extra=None, check=True):
    """Run the installed ``basicsr`` command (through this interpreter) in ``cwd``; returns CompletedProcess."""
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    env.update(env_extra or {})
    cmd = [sys.executable, '-m', 'senm_plugin.cli'] + list(args)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{" ".join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    return proc


TINY_SENMVAE_OPT = {'num_feat': 8, 'num_latent_layers': [1, 1], 'zn_dim': 4, 'num_grow_ch': 8}
TINY_LEVEL_OPT = {'num_feat': 4}


def save_tiny_senmvae(folder, iteration=10, seed=0):
    """Save a tiny random SeNMVAE (TINY_SENMVAE_OPT) and NoiseLevelNet as BasicSR checkpoints
    ``folder/net_g_<iteration>.pth`` / ``folder/net_le_<iteration>.pth`` and the SeNMVAE as a bare state dict
    ``folder/bare_senmvae.pth``; returns the three paths. The zero-initialised weights (latent projections, last
    convs of the Gaussian heads) get small random values so the latents, the seed and the level change the output."""
    import torch
    from senm_plugin.archs.noise_level_arch import NoiseLevelNet
    from senm_plugin.archs.senmvae_arch import SeNMVAE
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    net = SeNMVAE(**TINY_SENMVAE_OPT)
    for param in net.parameters():
        if param.dim() > 1 and not param.any():
            torch.nn.init.normal_(param, 0, 0.1)
    level_net = NoiseLevelNet(**TINY_LEVEL_OPT)
    paths = (os.path.join(folder, f'net_g_{iteration}.pth'), os.path.join(folder, f'net_le_{iteration}.pth'),
             os.path.join(folder, 'bare_senmvae.pth'))
    torch.save({'params': net.state_dict()}, paths[0])
    torch.save({'params': level_net.state_dict()}, paths[1])
    torch.save(net.state_dict(), paths[2])
    return paths

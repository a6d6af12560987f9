"""The GPU path: training speed and memory (fp32 / bf16), inference times beside the reference code, GPU vs CPU.

    python benchmarks/bench_gpu.py [--ref-senm DIR] [--ref-scaoednet DIR] [--iters 200] [--dry-run]

- Training: ``SeNMVAEModel`` with ``options/train/senm_sidd.yml``'s networks and losses (LPIPS with a random AlexNet:
  no download, same cost) and ``ScaoedNetModel`` with ``options/train/scaoednet_sidd.yml`` (K = 5), on random batches of
  the option files' batch and patch sizes; iterations per second after a warm-up and peak allocated memory.
- Inference: ScaoedNet ``restore`` at 1x3x512x512 for K = 1 / 3 / 5 (the poster: 0.07 / 0.15 / 0.28 s on an
  RTX 3090) and SeNM-VAE ``translate`` at 1x3x256x256, each beside the reference network with the same weights.
- Agreement: the same weights and input on GPU and on CPU (ScaoedNet K = 5 at 128x128, deterministic translate).

Without CUDA it says so and stops, unless ``--dry-run`` (everything on CPU at tiny sizes, to check the script).
The reference code (github.com/chaoren88/ScaoedNet, github.com/zhengdihan/SeNM-VAE) is not part of this project:
pass the folders holding ``ScaoedNet.py`` and ``SIDD/models/network_senmvae.py``; without them those rows are skipped.
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

import torch
import yaml

import senm_plugin  # noqa: F401  (registers the plugin; makes BasicSR importable)
from basicsr.utils.registry import MODEL_REGISTRY
from senm_plugin.archs.scaoednet_arch import ScaoedNet
from senm_plugin.archs.senmvae_arch import SeNMVAE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def median_seconds(fn, device, repeats, warmup=3):
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_opt(option_file, device, amp):
    with open(os.path.join(ROOT, 'options', 'train', option_file)) as f:
        opt = yaml.safe_load(f)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False, num_gpu=int(device.type == 'cuda'))
    opt['path'].update(models='/nonexistent', training_states='/nonexistent', experiments_root='/nonexistent')
    opt['train']['amp'] = amp
    if 'perceptual_opt' in opt['train']:
        opt['train']['perceptual_opt'].update(random_backbone=True)
    return opt


def train_speed(kind, device, amp, iters, tiny):
    """(iterations per second, peak MB) of ``iters`` training steps of SeNM-VAE or ScaoedNet on random data."""
    option_file = 'senm_sidd.yml' if kind == 'senmvae' else 'scaoednet_sidd.yml'
    opt = model_opt(option_file, device, amp)
    data = opt['datasets']['train']
    batch, size = data['batch_size_per_gpu'], data['gt_size']
    if tiny:
        batch, size = 2, 32
        if kind == 'senmvae':
            opt['network_g'].update(num_feat=16, num_latent_layers=[1, 1], zn_dim=4)
        else:
            opt['network_g'].update(num_feat=16, num_blocks=1)
    torch.manual_seed(0)
    model = MODEL_REGISTRY.get(opt['model_type'])(opt)
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(batch, 3, size, size, generator=g)
    lq = (gt + 0.04 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    model.feed_data({'gt': gt, 'lq': lq, 'domain': torch.arange(batch) % 3})
    for it in range(1, 6):  # warm-up: cuDNN autotuning, allocator
        model.optimize_parameters(it)
    sync(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for it in range(6, 6 + iters):
        model.optimize_parameters(it)
    sync(device)
    rate = iters / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == 'cuda' else float('nan')
    loss = {k: float(v) for k, v in model.log_dict.items() if k.startswith('l_')}
    return rate, peak, loss


def restore_times(device, ref_dir, size, repeats, stages=(1, 3, 5)):
    """Rows (K, ours s, reference s or None, max |ours - reference|) for ScaoedNet at 1x3xsizexsize."""
    ref_mod = None
    if ref_dir and os.path.isfile(os.path.join(ref_dir, 'ScaoedNet.py')):
        ref_mod = load_module(os.path.join(ref_dir, 'ScaoedNet.py'), 'ref_scaoednet')
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for k in stages:
        torch.manual_seed(k)
        ours = ScaoedNet(num_stages=k).to(device).eval()
        ref_s, diff = None, None
        if ref_mod is not None:
            ref = ref_mod.DN(T=k - 1)
            ours.load_state_dict(ref.state_dict(), strict=True)
            ref = ref.to(device).eval()
            with torch.inference_mode():
                ref_s = median_seconds(lambda: ref(x), device, repeats)
                diff = (ref(x)[1] - ours.restore(x)).abs().max().item()
        ours_s = median_seconds(lambda: ours.restore(x), device, repeats)
        rows.append((k, ours_s, ref_s, diff))
    return rows


def translate_times(device, ref_dir, size, repeats):
    """(ours s, reference s or None) for SeNM-VAE translate (paper network) on 1x3xsizexsize."""
    torch.manual_seed(0)
    ours = SeNMVAE().to(device).eval()
    ref_s = None
    path = os.path.join(ref_dir or '', 'SIDD', 'models', 'network_senmvae.py')
    clean = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    if os.path.isfile(path):
        ref = load_module(path, 'ref_network_senmvae').SeNMVAE(in_ch=3, nf=64, nls=[2, 4], zn_dim=16, num_down=0)
        ours.load_state_dict(ref.state_dict(), strict=True)
        ref = ref.to(device).eval()
        level = torch.full((1, 1, 1, 1), 0.04, device=device)
        with torch.no_grad():
            ref_s = median_seconds(lambda: ref.translate(clean, level), device, repeats)
    with torch.no_grad():
        ours_s = median_seconds(lambda: ours.translate(clean, 0.04), device, repeats)
    return ours_s, ref_s


def gpu_vs_cpu(device):
    """Max |GPU - CPU| of ScaoedNet K=5 restore (128x128) and of a deterministic SeNM-VAE translate (64x64)."""
    torch.manual_seed(0)
    den, vae = ScaoedNet(num_stages=5).eval(), SeNMVAE().eval()
    with torch.no_grad():  # a trained-like scale: random weights of unit size blow activations up
        for p in vae.parameters():
            p.mul_(0.5)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    c = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cpu = (den.restore(x), vae.translate(c, 0.04, deterministic=True))
        den, vae = den.to(device), vae.to(device)
        dev = (den.restore(x.to(device)).cpu(), vae.translate(c.to(device), 0.04, deterministic=True).cpu())
    return [(a - b).abs().max().item() for a, b in zip(cpu, dev)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=200, help='timed training iterations per case')
    parser.add_argument('--repeats', type=int, default=20, help='timed inference calls per case (median)')
    parser.add_argument('--ref-senm', help='clone of zhengdihan/SeNM-VAE')
    parser.add_argument('--ref-scaoednet', help='clone of chaoren88/ScaoedNet')
    parser.add_argument('--dry-run', action='store_true', help='without CUDA: run every part on CPU at tiny sizes')
    args = parser.parse_args()
    if torch.cuda.is_available():
        device, tiny = torch.device('cuda'), False
        torch.backends.cudnn.benchmark = True
        print(f'device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}')
    elif args.dry_run:
        device, tiny = torch.device('cpu'), True
        args.iters, args.repeats = 2, 1
        print('CUDA not available: dry run of every part on CPU at tiny sizes (figures mean nothing)')
    else:
        print('CUDA not available: GPU benchmarks skipped (--dry-run runs them on CPU at tiny sizes)')
        return 0

    print(f'\n## Training, {args.iters} iterations on random data (option files\' batch and patch)')
    print('| network | amp | it/s | peak MB | last losses |\n|---|---|---|---|---|')
    for kind in ('senmvae', 'scaoednet'):
        for amp in ('none', 'bf16'):
            rate, peak, loss = train_speed(kind, device, amp, args.iters, tiny)
            shown = ', '.join(f'{k} {v:.4g}' for k, v in list(loss.items())[:3])
            print(f'| {kind} | {amp} | {rate:.2f} | {peak:.0f} | {shown} |', flush=True)

    size = 64 if tiny else 512
    print(f'\n## ScaoedNet restore, 1x3x{size}x{size} (poster, RTX 3090: K=1 0.07 s, K=3 0.15 s, K=5 0.28 s)')
    print('| K | ours s | reference s | ratio | max abs diff |\n|---|---|---|---|---|')
    for k, ours_s, ref_s, diff in restore_times(device, args.ref_scaoednet, size, args.repeats):
        ref_txt = f'{ref_s:.4f} | {ref_s / ours_s:.2f}x | {diff:.2e}' if ref_s else 'n/a | n/a | n/a'
        print(f'| {k} | {ours_s:.4f} | {ref_txt} |', flush=True)

    size = 32 if tiny else 256
    ours_s, ref_s = translate_times(device, args.ref_senm, size, args.repeats)
    print(f'\n## SeNM-VAE translate (paper network), 1x3x{size}x{size}')
    ref_txt = f'{ref_s:.4f} s, ratio {ref_s / ours_s:.2f}x' if ref_s else 'n/a'
    print(f'ours {ours_s:.4f} s; reference {ref_txt}')

    den_diff, vae_diff = gpu_vs_cpu(device)
    print(f'\n## GPU vs CPU, same weights and input: ScaoedNet K=5 restore max abs diff {den_diff:.2e}; '
          f'SeNM-VAE deterministic translate {vae_diff:.2e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""SeNM-VAE speed and memory: one training step and ``translate`` throughput, ours vs the reference network.

Both networks hold the same weights and see the same batch (8 crops of 64x64, domains paired/source/target in
turn). The reference step is its network's forward over every sample (with label masks) + backward + Adam, VAE
terms only; ours is the domain-aware forward of ``SeNMVAE`` with the same loss terms. Each case runs in its own
process so that its peak memory (max RSS on CPU, max allocated on CUDA) is its own; with ``--rounds N`` the cases
alternate N times and each figure is the median over rounds. Our steps keep freed memory in the heap
(``senm_plugin.heap.retain_heap``) as ``SeNMVAEModel`` does for CPU training; ``ref_step_heap`` gives the reference
the same setting, to show what that setting alone is worth. On CPU ours run their 3x3 convolutions through the
Winograd kernel (``senm_plugin.ops.winograd``); ``ours_step_direct`` and ``ours_translate_direct`` use oneDNN's
direct convolutions instead, to show what the kernel is worth.

    python benchmarks/bench_senmvae.py [--quick] [--threads 2] [--ref-dir /path/to/SeNM-VAE/SIDD/models]

The reference code (github.com/zhengdihan/SeNM-VAE) is not part of this project: clone it and pass ``--ref-dir``.
"""
import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = ('ref_step', 'ours_step', 'ours_step_direct', 'ours_step_cl', 'ours_model_step', 'ref_step_heap',
         'ref_translate', 'ours_translate', 'ours_translate_direct')
# $REF_SENM: a clone of zhengdihan/SeNM-VAE (as for gpu_check.sh); the network file is in its SIDD/models
DEFAULT_REF = os.path.join(os.environ['REF_SENM'], 'SIDD', 'models') if os.environ.get('REF_SENM') else ''


def load_reference(ref_dir):
    """The reference ``network_senmvae`` module, imported from its file."""
    spec = importlib.util.spec_from_file_location('ref_network_senmvae', os.path.join(ref_dir, 'network_senmvae.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_batch(torch, batch, size, device):
    """Clean/noisy crops, per-sample levels and domains (0 paired, 1 source, 2 target in turn)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    domain = torch.arange(batch) % 3
    level = torch.std(y - x, dim=(1, 2, 3))
    return x.to(device), y.to(device), level.to(device), domain.to(device)


def timed(fn, iters, sync):
    """Median wall time of ``iters`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(iters):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(case, args):
    """Run one case in this process; returns a dict of figures."""
    import torch
    import senm_plugin  # noqa: F401
    from senm_plugin.archs.senmvae_arch import SeNMVAE

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    size, batch, tsize, tbatch, iters = (32, 3, 32, 2, 1) if args.quick else (64, 8, 256, 8, args.iters)
    kl_weight, klz_weight = 1e-2, 1e-7
    torch.manual_seed(0)
    ref_module = load_reference(args.ref_dir)
    ref = ref_module.SeNMVAE(in_ch=3, nf=64, nls=[2, 4], zn_dim=16, num_down=0)
    x, y, level, domain = make_batch(torch, batch, size, device)
    channels_last = case.endswith('_cl') or case == 'ours_model_step' and args.channels_last_model
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        x, y = x.contiguous(memory_format=fmt), y.contiguous(memory_format=fmt)

    if case.startswith('ours') or case == 'ref_step_heap':
        from senm_plugin.heap import retain_heap_for_training
        retain_heap_for_training({}, device)
    if case in ('ref_step', 'ref_step_heap'):
        net = ref.to(device)
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        label = (domain - 1).float().view(-1, 1, 1, 1)  # reference labels: -1 paired, 0 source, 1 target
        label[domain == 1] = 0
        label[domain == 2] = 1
        mask_x, mask_y = (domain != 2), (domain != 1)

        def step():
            opt.zero_grad()
            rec_x, rec_y, kl_z, kl_zn = net(x, y, level.view(-1, 1, 1, 1), label)
            loss = (((rec_x[mask_x] - x[mask_x])**2).mean() + ((rec_y[mask_y] - y[mask_y])**2).mean() +
                    kl_weight * kl_zn.mean() + kl_weight * klz_weight * kl_z.mean())
            loss.backward()
            opt.step()
    elif case in ('ours_step', 'ours_step_direct', 'ours_step_cl'):
        net = SeNMVAE(winograd=case != 'ours_step_direct')
        net.load_state_dict(ref.state_dict())
        net = net.to(device, memory_format=fmt)
        opt = torch.optim.Adam(net.parameters(), 1e-4)

        def step():
            opt.zero_grad()
            out = net(x, y, level, domain)
            loss = (((out['x_hat'] - x[out['x_idx']])**2).mean() + ((out['y_hat'] - y[out['y_idx']])**2).mean() +
                    kl_weight * out['kl_zn'].mean() + kl_weight * klz_weight * out['kl_z'].mean())
            loss.backward()
            opt.step()
    elif case == 'ours_model_step':
        from basicsr.utils.registry import MODEL_REGISTRY
        import yaml
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, 'options', 'train', 'senm_sidd.yml')) as f:
            opt_dict = yaml.safe_load(f)
        opt_dict.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=int(device.type == 'cuda'))
        opt_dict['path'].update(models='/nonexistent', training_states='/nonexistent')
        opt_dict['train']['perceptual_opt'].update(random_backbone=True)  # no download: speed is the same
        opt_dict['train']['optim_g']['lr'] = opt_dict['train']['optim_d']['lr'] = 1e-4
        model = MODEL_REGISTRY.get('SeNMVAEModel')(opt_dict)
        model.net_g.load_state_dict(ref.state_dict())
        if channels_last:
            for net in (model.net_g, model.net_le, model.net_d):
                net.to(memory_format=fmt)
        model.feed_data({'gt': x, 'lq': y, 'domain': domain})

        def step():
            model.optimize_parameters(100)
    elif case in ('ref_translate', 'ours_translate', 'ours_translate_direct'):
        if case == 'ref_translate':
            net = ref.to(device).eval()
        else:
            net = SeNMVAE(winograd=case != 'ours_translate_direct')
            net.load_state_dict(ref.state_dict())
            net = net.to(device).eval()
        clean = torch.rand(tbatch, 3, tsize, tsize, device=device)
        levels = torch.full((tbatch, 1, 1, 1), 0.04, device=device)

        def step():
            with torch.no_grad():
                net.translate(clean, levels)
    else:
        raise ValueError(case)

    seconds = timed(step, iters, sync)
    result = {'case': case, 'seconds': seconds, 'batch': tbatch if 'translate' in case else batch,
              'size': tsize if 'translate' in case else size}
    if device.type == 'cuda':
        result['peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result['peak_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='tiny sizes, one timed iteration (checks it runs)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--iters', type=int, default=3, help='timed iterations per case (median)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--ref-dir', default=DEFAULT_REF, help='folder holding the reference network_senmvae.py')
    parser.add_argument('--cases', nargs='+', default=list(CASES), choices=CASES)
    parser.add_argument('--channels-last-model', action='store_true',
                        help='run ours_model_step with channels_last tensors')
    parser.add_argument('--rounds', type=int, default=1, help='alternate the cases this many times (median)')
    parser.add_argument('--case', help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return 0
    if not os.path.isfile(os.path.join(args.ref_dir, 'network_senmvae.py')):
        raise SystemExit(f'reference code not found in {args.ref_dir}: clone github.com/zhengdihan/SeNM-VAE and '
                         f'pass --ref-dir <clone>/SIDD/models')
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    runs = {case: [] for case in args.cases}
    for _ in range(args.rounds):
        for case in args.cases:
            cmd = [sys.executable, os.path.abspath(__file__), '--case', case, '--threads', str(args.threads),
                   '--iters', str(args.iters), '--device', args.device, '--ref-dir', args.ref_dir]
            cmd += ['--quick'] if args.quick else []
            cmd += ['--channels-last-model'] if args.channels_last_model else []
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f'case {case} failed:\n{out.stderr[-3000:]}')
            r = json.loads(out.stdout.strip().splitlines()[-1])
            runs[case].append(r)
            print(f'{case:16s} {r["seconds"]:8.3f} s   batch {r["batch"]} of {r["size"]}x{r["size"]}   '
                  f'peak {r["peak_mb"]:7.0f} MB', flush=True)
    results = {
        case: dict(rs[0], seconds=statistics.median(r['seconds'] for r in rs), peak_mb=max(r['peak_mb'] for r in rs))
        for case, rs in runs.items()
    }
    if args.rounds > 1:
        print('\nmedian over rounds:')
        for case, r in results.items():
            print(f'{case:16s} {r["seconds"]:8.3f} s   peak {r["peak_mb"]:7.0f} MB')

    print()
    ref = results.get('ref_step')
    for case in ('ours_step', 'ours_step_direct', 'ours_step_cl', 'ours_model_step', 'ref_step_heap'):
        if ref and case in results:
            print(f'training step speed-up {case} vs reference: {ref["seconds"] / results[case]["seconds"]:.2f}x')
    if 'ref_translate' in results:
        for case in ('ref_translate', 'ours_translate', 'ours_translate_direct'):
            if case in results:
                r = results[case]
                print(f'{case}: {r["batch"] / r["seconds"]:.3f} images/s at {r["size"]}x{r["size"]}, speed-up '
                      f'{results["ref_translate"]["seconds"] / r["seconds"]:.2f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())

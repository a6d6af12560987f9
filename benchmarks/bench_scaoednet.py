"""ScaoedNet on CPU: speed and outputs against the reference ``DN``, MACs/params at K = 1, 3, 5, tiled-inference memory.

Runs the reference implementation (``chaoren88/ScaoedNet``, imported from ``--ref``; skipped with a message when
absent) and ours side by side, on the same random weights and input. For speed each implementation runs in a fresh
process (``ScaoedNet.restore`` changes process-wide malloc settings, see ``senm_plugin.heap``), and the processes
alternate for several rounds so that a slow spell of a shared machine hits every case alike:

    python benchmarks/bench_scaoednet.py --ref /path/to/ScaoedNet           # full run (many minutes)
    python benchmarks/bench_scaoednet.py --ref /path/to/ScaoedNet --quick   # a short check

Throughput is given in GFLOP/s with FLOPs = 2 x the reference's multiply-accumulates, next to the throughput of a
single channels-last 3x3 64->64 convolution measured in the same run (the practical peak of these cores).
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import senm_plugin  # noqa: F401,E402
from senm_plugin.archs.scaoednet_arch import ScaoedNet  # noqa: E402
from senm_plugin.heap import retained_heap  # noqa: E402
from senm_plugin.ops.winograd import kernel_error, load_kernel  # noqa: E402

POSTER_GFLOPS = {1: 212, 3: 640, 5: 1071}  # poster, 512x512 output ("FLOPS"; they are multiply-accumulates)


def timed(fn, repeats):
    """Median wall time of ``repeats`` calls of ``fn`` after one warm-up call; returns (seconds, last output)."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def conv_peak_gflops(repeats, size=128):
    """GFLOP/s of one channels-last 3x3 64->64 convolution on a 1x64xSxS map in inference mode."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.rand(1, 64, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds, _ = timed(lambda: [conv(x) for _ in range(10)], repeats)
    return 10 * 2 * 64 * 64 * 9 * size * size / seconds / 1e9


def count_macs(net, size):
    """Multiply-accumulates of ``net`` on a 1x3xSxS input, counted by mmengine's FlopAnalyzer."""
    from mmengine.analysis import FlopAnalyzer
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analyzer = FlopAnalyzer(net, (torch.rand(1, 3, size, size), ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return analyzer.total()


def load_reference(path):
    """The reference ``DN`` class, or None with a message when ``path`` does not hold ScaoedNet.py."""
    if not path or not os.path.isfile(os.path.join(path, 'ScaoedNet.py')):
        print(f'Reference code not found at {path!r} (expected ScaoedNet.py there): reference timings skipped.')
        return None
    sys.path.insert(0, path)
    from ScaoedNet import DN
    return DN


SPEED_CASES = {
    'ref': 'reference DN, inference_mode',
    'forward': 'ScaoedNet forward, inference_mode',
    'restore': 'ScaoedNet.restore (fast path, Winograd 3x3)',
    'restore_direct': 'ScaoedNet.restore(winograd=False) (fast path, oneDNN 3x3)',
    'ref_heap': 'reference DN, inference_mode, inside retained_heap()',
}


def speed_child(case, ref_path, size, repeats, stages, out_path):
    """Run in a fresh process: time one implementation; its last output goes to ``out_path``."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size)
    ref_cls = load_reference(ref_path)  # ours load its weights when it is there
    if case.startswith('ref') and ref_cls is None:
        raise SystemExit(f'no reference code at {ref_path}')
    ref = ref_cls(T=stages - 1).eval() if ref_cls is not None else None
    ours = ScaoedNet(num_stages=stages).eval()
    if ref is not None:
        ours.load_state_dict(ref.state_dict(), strict=True)

    def run_ref():
        with torch.inference_mode():
            return ref(x)[1]

    def run_forward():
        with torch.inference_mode():
            return ours(x)

    if case == 'ref_heap':
        with retained_heap():
            seconds, out = timed(run_ref, repeats)
    else:
        run = {'ref': run_ref, 'forward': run_forward, 'restore': lambda: ours.restore(x),
               'restore_direct': lambda: ours.restore(x, winograd=False)}[case]
        seconds, out = timed(run, repeats)
    torch.save(out, out_path)
    print(seconds)


def bench_speed(ref_path, size, repeats, stages, rounds):
    """Each implementation in its own fresh process (malloc as a user's process starts), alternated ``rounds``
    times so that a slow spell of the machine hits every case alike."""
    import tempfile
    print(f'\n## Speed: 1x3x{size}x{size}, K={stages}, {torch.get_num_threads()} threads, {rounds} alternating '
          f'rounds of fresh processes x median of {repeats}')
    counted = ScaoedNet(num_stages=stages).eval().requires_grad_(False)
    counted.reuse_invariants = False  # the reference's operation count
    macs = count_macs(counted, 64) * (size / 64)**2
    peak = conv_peak_gflops(repeats)
    print(f'channels-last 3x3 conv peak: {peak:.0f} GFLOP/s; network: {macs / 1e9:.1f} GMAC '
          f'(reference operation count)')
    if load_kernel() is None:
        print(f'Winograd kernel unavailable ({kernel_error()}): `restore` runs the direct convolutions')
    cases = [c for c in SPEED_CASES if load_reference(ref_path) is not None or not c.startswith('ref')]
    times = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for case in cases:
                cmd = [sys.executable, os.path.abspath(__file__), '--speed-child', case, '--ref', ref_path or '',
                       '--size', str(size), '--repeats', str(repeats), '--stages', str(stages), '--threads',
                       str(torch.get_num_threads()), '--out', os.path.join(tmp, f'{case}.pt')]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f'{case} failed:\n{proc.stderr[-2000:]}')
                times[case].append(float(proc.stdout.split()[-1]))
        outs = {case: torch.load(os.path.join(tmp, f'{case}.pt')) for case in cases}
    base = cases[0]
    t_base = statistics.median(times[base])
    print(f'| implementation | seconds (median of rounds) | speed-up vs {SPEED_CASES[base]} | per-round speed-ups '
          f'| GFLOP/s | % of conv peak | max abs diff |')
    print('|---|---|---|---|---|---|---|')
    for case in cases:
        seconds = statistics.median(times[case])
        per_round = ', '.join(f'{b / t:.2f}' for b, t in zip(times[base], times[case]))
        gflops = 2 * macs / seconds / 1e9
        diff = (outs[case] - outs[base]).abs().max().item()
        print(f'| {SPEED_CASES[case]} | {seconds:.3f} | {t_base / seconds:.2f}x | {per_round} | {gflops:.0f} '
              f'| {100 * gflops / peak:.0f}% | {diff:.2e} |')


def bench_macs(ref_cls, size):
    print(f'\n## MACs and parameters (FlopAnalyzer at 1x3x{size}x{size}, scaled to 512x512: every counted op '
          f'runs at a fixed fraction of the input resolution)')
    print('| K | ours GMAC (reference op count) | ours GMAC (executed, invariants reused) | reference GMAC '
          '| poster GFLOPs | parameters |')
    print('|---|---|---|---|---|---|')
    scale = (512 / size)**2
    for stages in (1, 3, 5):
        net = ScaoedNet(num_stages=stages).eval().requires_grad_(False)
        net.reuse_invariants = False
        full = count_macs(net, size) * scale / 1e9
        net.reuse_invariants = True
        executed = count_macs(net, size) * scale / 1e9
        ref = count_macs(ref_cls(T=stages - 1).eval(), size) * scale / 1e9 if ref_cls is not None else float('nan')
        params = sum(p.numel() for p in net.parameters())
        print(f'| {stages} | {full:.1f} | {executed:.1f} | {ref:.1f} | {POSTER_GFLOPS[stages]} | {params:,} |')


def tiled_child(width, height, tile_size, tile_overlap, stages):
    """Run in a fresh process: tiled restoration of one random ``width`` x ``height`` image."""
    torch.manual_seed(0)
    net = ScaoedNet(num_stages=stages).eval()
    x = torch.rand(1, 3, height, width)
    start = time.perf_counter()
    out = net.restore(x, tile_size=tile_size, tile_overlap=tile_overlap)
    assert out.shape == x.shape
    print(f'{time.perf_counter() - start:.1f}')


def bench_memory(width, height, tile_size, tile_overlap, stages):
    print(f'\n## Tiled inference memory: {width}x{height} image, tile {tile_size}, overlap {tile_overlap}, K={stages}')
    cmd = [sys.executable, os.path.abspath(__file__), '--tiled-child', f'{width}x{height}', '--tile-size',
           str(tile_size), '--tile-overlap', str(tile_overlap), '--stages', str(stages)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f'tiled run failed:\n{proc.stderr[-2000:]}')
        return
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    print(f'peak RSS {peak_gib:.2f} GiB (whole process: interpreter, weights, input and output images), '
          f'{float(proc.stdout.split()[-1]):.0f} s')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ref', default=os.environ.get('REF_SCAOEDNET'),
                        help='clone of chaoren88/ScaoedNet (holding ScaoedNet.py; default $REF_SCAOEDNET)')
    parser.add_argument('--quick', action='store_true', help='small sizes and one repeat: a short check')
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--stages', type=int, default=5)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: torch\'s choice)')
    parser.add_argument('--macs-size', type=int, default=128, help='input side at which MACs are counted')
    parser.add_argument('--memory-image', default='4000x3000', help='WxH of the tiled-inference memory test')
    parser.add_argument('--tile-size', type=int, default=512)
    parser.add_argument('--tile-overlap', type=int, default=32)
    parser.add_argument('--skip', nargs='*', default=[], choices=['speed', 'macs', 'memory'])
    parser.add_argument('--rounds', type=int, default=4, help='alternating rounds of the speed comparison')
    parser.add_argument('--tiled-child', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--speed-child', default=None, choices=list(SPEED_CASES), help=argparse.SUPPRESS)
    parser.add_argument('--out', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiled_child:
        width, height = map(int, args.tiled_child.split('x'))
        return tiled_child(width, height, args.tile_size, args.tile_overlap, args.stages)
    if args.speed_child:
        return speed_child(args.speed_child, args.ref, args.size, args.repeats, args.stages, args.out)
    if args.quick:
        args.size, args.repeats, args.rounds, args.macs_size, args.memory_image = 128, 1, 1, 64, '640x480'
        args.tile_size = 256
    ref_cls = load_reference(args.ref)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    if 'speed' not in args.skip:
        bench_speed(args.ref, args.size, args.repeats, args.stages, args.rounds)
    if 'macs' not in args.skip:
        bench_macs(ref_cls, args.macs_size)
    if 'memory' not in args.skip:
        width, height = map(int, args.memory_image.split('x'))
        bench_memory(width, height, args.tile_size, args.tile_overlap, args.stages)


if __name__ == '__main__':
    main()

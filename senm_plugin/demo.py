"""``basicsr demo``: the whole pipeline on images that ship with scikit-image, on a CPU in minutes, no downloads.

A small camera-noise dataset is built (a few clean/noisy pairs, clean-only and noisy-only crops, held-out test pairs,
with signal-dependent shot + read noise), then: ``prepare folders`` -> SeNM-VAE (small) -> ``generate`` synthetic
pairs from the clean-only crops -> ScaoedNet (small) trained on the few real pairs alone and on synthetic + real pairs
-> noise evaluation (SeNM-VAE against fitted Gaussian / Poisson-Gaussian noise) and denoising PSNR/SSIM on the
held-out pairs. Everything lands in ``results/demo/`` (``summary.md``, ``summary.json``, ``noise/`` pictures).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import yaml

REPO_OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'options')
# colour images inside scikit-image's package folder (no download); the test images are held out
TRAIN_IMAGES = ('astronaut.png', 'chelsea.png', 'coffee.png', 'motorcycle_left.png', 'hubble_deep_field.jpg',
                'retina.jpg')
TEST_IMAGES = ('rocket.jpg', 'ihc.png')
# the demo camera: upper part of the SIDD prior (REFERENCE.md: shot in [6.9e-4, 2.2e-2]), visibly noisy
DEMO_SHOT, DEMO_READ = 0.012, 2.0e-4
STAGES = 6


def _stage(k, text):
    print(f'\n==> {k}/{STAGES} {text}', flush=True)


def _read_sample(name):
    """A scikit-image sample image as uint8 BGR (OpenCV order, as BasicSR reads files)."""
    import skimage
    path = os.path.join(os.path.dirname(skimage.__file__), 'data', name)
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'scikit-image sample image missing: {path}; reinstall scikit-image')
    return img


def _random_crops(img, size, num, rng):
    h, w = img.shape[:2]
    for _ in range(num):
        top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        yield img[top:top + size, left:left + size]


def make_demo_data(root, crop=96, crops_per_image=12, num_paired=6, test_crop=128, seed=0):
    """Write the demo's camera-noise data as PNG folders under ``root``; returns ({name: folder}, facts).

    Crops of the training images are split into ``num_paired`` pairs, then halves of clean-only (source) and
    noisy-only (target) crops; the held-out images give the test pairs. One camera (shot, read) makes all noise.
    """
    from senm_plugin.data.noise_sim import simulate_camera_noise
    rng = np.random.default_rng(seed)
    crops = [c for name in TRAIN_IMAGES for c in _random_crops(_read_sample(name), crop, crops_per_image, rng)]
    order = rng.permutation(len(crops))
    paired, rest = order[:num_paired], order[num_paired:]
    source, target = rest[:len(rest) // 2], rest[len(rest) // 2:]
    folders = {}

    def write(domain, kind, index, img):
        folder = os.path.join(root, domain, kind)
        os.makedirs(folder, exist_ok=True)
        folders[f'{domain}_{kind}'] = folder
        cv2.imwrite(os.path.join(folder, f'{index:04d}.png'), img)

    for i in paired:
        write('paired', 'gt', i, crops[i])
        write('paired', 'lq', i, simulate_camera_noise(crops[i], DEMO_SHOT, DEMO_READ, rng))
    for i in source:
        write('source', 'gt', i, crops[i])
    for i in target:
        write('target', 'lq', i, simulate_camera_noise(crops[i], DEMO_SHOT, DEMO_READ, rng))
    for j, name in enumerate(TEST_IMAGES):
        for k, c in enumerate(_random_crops(_read_sample(name), test_crop, 2, rng)):
            write('test', 'gt', 2 * j + k, c)
            write('test', 'lq', 2 * j + k, simulate_camera_noise(c, DEMO_SHOT, DEMO_READ, rng))
    facts = {'shot': DEMO_SHOT, 'read': DEMO_READ, 'paired': len(paired), 'source': len(source),
             'target': len(target), 'test': 2 * len(TEST_IMAGES)}
    return folders, facts


def _load_template(name):
    path = os.path.join(REPO_OPTIONS, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Demo option file {path} not found: install the plugin from its repository with '
                                f'`pip install -e .` so the options/ folder is beside the package.')
    with open(path) as f:
        return yaml.safe_load(f)


def _train(opt, out, iters, seed):
    """Run ``basicsr train`` on ``opt`` (iterations and seed set here) in a fresh experiment; returns its folder."""
    opt['manual_seed'] = seed
    opt['train']['total_iter'] = iters
    opt['logger']['save_checkpoint_freq'] = iters
    opt['logger']['print_freq'] = max(1, min(opt['logger'].get('print_freq', 20), iters // 5 or 1))
    opt['val']['val_freq'] = iters
    scheduler = opt['train'].get('scheduler', {})
    if scheduler.get('type') == 'CosineAnnealingRestartLR':
        scheduler['periods'] = [iters]
    elif scheduler.get('type') == 'MultiStepLR':
        scheduler['milestones'] = [max(1, (3 * iters) // 4)]
    exp_root = os.path.join(os.getcwd(), 'experiments', opt['name'])
    if os.path.isdir(exp_root):  # a re-run starts afresh rather than archiving old demo runs forever
        shutil.rmtree(exp_root)
    opt_path = os.path.join(out, 'options', f'{opt["name"]}.yml')
    os.makedirs(os.path.dirname(opt_path), exist_ok=True)
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    print(f'$ basicsr train -opt {opt_path}', flush=True)
    subprocess.run([sys.executable, '-m', 'senm_plugin.cli', 'train', '-opt', opt_path], check=True)
    return exp_root


def evaluate_denoiser(net_path, network_opt, test_gt, test_lq):
    """PSNR/SSIM of the noisy inputs and of a trained denoiser's outputs on the test pairs (BasicSR metrics)."""
    import torch
    from basicsr.archs import build_network
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils import img2tensor, tensor2img
    from senm_plugin.checkpoint import load_network_weights
    net = load_network_weights(build_network(dict(network_opt)), net_path).eval()
    scores = {'noisy_psnr': [], 'noisy_ssim': [], 'psnr': [], 'ssim': []}
    for name in sorted(os.listdir(test_gt)):
        gt = cv2.imread(os.path.join(test_gt, name))
        lq = cv2.imread(os.path.join(test_lq, name))
        with torch.inference_mode():
            out = tensor2img(net(img2tensor(lq.astype(np.float32) / 255.0).unsqueeze(0)))
        scores['noisy_psnr'].append(calculate_psnr(lq, gt, crop_border=0))
        scores['noisy_ssim'].append(calculate_ssim(lq, gt, crop_border=0))
        scores['psnr'].append(calculate_psnr(out, gt, crop_border=0))
        scores['ssim'].append(calculate_ssim(out, gt, crop_border=0))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _summary_markdown(summary):
    facts, noise, den = summary['data'], summary['noise'], summary['denoise']
    lines = [
        '# basicsr demo', '',
        f'Camera: shot {facts["shot"]}, read {facts["read"]} (linear intensities, then gamma 2.2). Data: '
        f'{facts["paired"]} real pairs, {facts["source"]} clean-only and {facts["target"]} noisy-only crops, '
        f'{facts["test"]} held-out test pairs; {summary["synthetic_pairs"]} synthetic pairs. Iterations: SeNM-VAE '
        f'{summary["iters"]["senm"]}, ScaoedNet {summary["iters"]["denoiser"]}. Run time {summary["seconds"]} s.', '',
        '## Noise quality on the held-out pairs (lower is better)', '', '| noise model | KLD | AKLD |', '|---|---|---|'
    ]
    for entry in noise.values():
        lines.append(f'| {entry["label"]} | {entry["kld"]:.4f} | {entry["akld"]:.4f} |')
    lines += [
        '', '## Denoising on the held-out pairs', '', '| input / denoiser | PSNR (dB) | SSIM |', '|---|---|---|',
        f'| noisy input | {den["noisy_psnr"]:.2f} | {den["noisy_ssim"]:.4f} |',
        f'| ScaoedNet, {facts["paired"]} real pairs only | {den["pairs_only"]["psnr"]:.2f} | '
        f'{den["pairs_only"]["ssim"]:.4f} |',
        f'| ScaoedNet, SeNM-VAE synthetic + real pairs | {den["synthetic_plus_pairs"]["psnr"]:.2f} | '
        f'{den["synthetic_plus_pairs"]["ssim"]:.4f} |', '',
        'Pictures: `noise/grid.png` (clean | real noisy | generated | real noise | generated noise), '
        '`noise/histogram.png`, `noise/noise_level.png`; full noise report: `noise/report.md`.'
    ]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    """Run the demo; returns 0 on success."""
    parser = argparse.ArgumentParser(prog='basicsr demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=os.path.join('results', 'demo'), help='output folder (default results/demo)')
    parser.add_argument('--iters', type=int, default=200, help='training iterations of each network (default 200)')
    parser.add_argument('--quick', action='store_true', help='a smoke run: 10 iterations, fewer crops')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    iters = 10 if args.quick else args.iters
    if iters < 1:
        parser.error('--iters must be >= 1')
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    start = time.time()

    _stage(1, 'building camera-noise data from scikit-image sample images')
    folders, facts = make_demo_data(os.path.join(out, 'data'), crops_per_image=4 if args.quick else 12, seed=args.seed)
    print(f'    {facts["paired"]} pairs, {facts["source"]} clean-only, {facts["target"]} noisy-only crops, '
          f'{facts["test"]} held-out test pairs')

    _stage(2, 'basicsr prepare folders: the three domains as LMDBs')
    from senm_plugin.data import prepare
    lmdb_root = os.path.join(out, 'lmdb')
    code = prepare.main([
        'folders', '--paired-gt', folders['paired_gt'], '--paired-lq', folders['paired_lq'], '--source',
        folders['source_gt'], '--target', folders['target_lq'], '--out', lmdb_root, '--seed',
        str(args.seed), '--workers', '1', '--overwrite'
    ])
    if code:
        raise SystemExit(f'basicsr demo: prepare failed ({code})')

    _stage(3, f'training a small SeNM-VAE on the three domains ({iters} iterations)')
    senm = _load_template('demo_senm.yml')
    senm['name'] = f'demo_senm_seed{args.seed}'
    data = senm['datasets']['train']
    for key, name in (('dataroot_paired_gt', 'paired_gt'), ('dataroot_paired_lq', 'paired_lq'),
                      ('dataroot_source', 'source'), ('dataroot_target', 'target')):
        data[key] = os.path.join(lmdb_root, f'{name}.lmdb')
    senm['datasets']['val'].update(dataroot_gt=folders['test_gt'], dataroot_lq=folders['test_lq'])
    senm_root = _train(senm, out, iters, args.seed)
    senm_ckpt = os.path.join(senm_root, 'models', 'net_g_latest.pth')
    senm_opt = os.path.join(out, 'options', f'{senm["name"]}.yml')

    _stage(4, 'basicsr generate: synthetic pairs from the clean-only crops, levels estimated from noisy-only crops')
    from senm_plugin.generate import run_generate
    synth = os.path.join(out, 'synthetic')
    manifest = run_generate({
        'model': senm_ckpt, 'level_model': os.path.join(senm_root, 'models', 'net_le_latest.pth'),
        'network_g': senm_opt, 'input': os.path.join(lmdb_root, 'source.lmdb'), 'out': synth,
        'levels': f'estimate:{os.path.join(lmdb_root, "target.lmdb")}', 'seed': args.seed, 'device': 'cpu',
        'overwrite': True
    })
    num_synth = len(manifest['images'])

    _stage(5, f'training ScaoedNet on the {facts["paired"]} real pairs alone and on synthetic + real pairs '
           f'({iters} iterations each)')
    den_scores = {}
    for key, mixed in (('pairs_only', False), ('synthetic_plus_pairs', True)):
        opt = _load_template('demo_scaoednet.yml')
        opt['name'] = f'demo_scaoednet_{key}_seed{args.seed}'
        train = opt['datasets']['train']
        if mixed:
            train.update(type='MixedPairDataset', dataroot_synth_gt=os.path.join(synth, 'gt.lmdb'),
                         dataroot_synth_lq=os.path.join(synth, 'lq.lmdb'), real_ratio=0.25)
            train['dataroot_real_gt'] = os.path.join(lmdb_root, 'paired_gt.lmdb')
            train['dataroot_real_lq'] = os.path.join(lmdb_root, 'paired_lq.lmdb')
            train['io_backend'] = {'type': 'lmdb'}
        else:
            train.update(dataroot_gt=os.path.join(lmdb_root, 'paired_gt.lmdb'),
                         dataroot_lq=os.path.join(lmdb_root, 'paired_lq.lmdb'), io_backend={'type': 'lmdb'})
        opt['datasets']['val'].update(dataroot_gt=folders['test_gt'], dataroot_lq=folders['test_lq'])
        exp_root = _train(opt, out, iters, args.seed)
        den_scores[key] = evaluate_denoiser(
            os.path.join(exp_root, 'models', 'net_g_latest.pth'), opt['network_g'], folders['test_gt'],
            folders['test_lq'])

    _stage(6, 'basicsr evaluate noise: SeNM-VAE against fitted Gaussian and Poisson-Gaussian noise')
    from senm_plugin import evaluate
    report = evaluate.run_noise(evaluate._parser().parse_args([
        'noise', '--clean', folders['test_gt'], '--real', folders['test_lq'], '--model', senm_ckpt, '--network-opt',
        senm_opt, '--out', os.path.join(out, 'noise'), '--seed', str(args.seed), '--device', 'cpu'
    ]))

    summary = {
        'data': facts,
        'iters': {'senm': iters, 'denoiser': iters},
        'synthetic_pairs': num_synth,
        'seconds': round(time.time() - start, 1),
        'noise': {k: {'label': v['label'], 'kld': v['kld'], 'akld': v['akld']}
                  for k, v in report['metrics'].items()},
        'denoise': {
            'noisy_psnr': den_scores['pairs_only']['noisy_psnr'],
            'noisy_ssim': den_scores['pairs_only']['noisy_ssim'],
            **{k: {'psnr': v['psnr'], 'ssim': v['ssim']} for k, v in den_scores.items()}
        }
    }
    with open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    text = _summary_markdown(summary)
    with open(os.path.join(out, 'summary.md'), 'w') as f:
        f.write(text)
    print('\n' + text)
    print(f'Demo finished in {summary["seconds"]} s; results in {out}', flush=True)
    return 0

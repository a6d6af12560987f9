"""``basicsr demo``: the plugin's main job on images that ship with scikit-image, on a CPU in minutes.

Stages, each printed as it starts: (1) build a small camera-noise dataset (a few pairs, clean-only and noisy-only
sets, held-out test pairs) with a signal-dependent shot + read noise simulation; (2) train a small ScaoedNet on the
few real pairs with ``basicsr train``; (3) test it on the held-out pairs and write ``results/demo/summary.{json,md}``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import yaml

REPO_OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'options')
# colour images inside scikit-image's package folder (no download); the last two are held out for testing
TRAIN_IMAGES = ('astronaut.png', 'chelsea.png', 'coffee.png', 'motorcycle_left.png', 'hubble_deep_field.jpg',
                'retina.jpg')
TEST_IMAGES = ('rocket.jpg', 'ihc.png')


def _stage(text):
    print(f'\n==> {text}', flush=True)


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
    """Write the demo's camera-noise data as PNG folders under ``root``; returns {domain: folder} and noise params.

    Crops of the training images are split into ``num_paired`` pairs, then halves of clean-only (source) and
    noisy-only (target) crops; the held-out images give the test pairs. One camera (shot, read) serves all images.
    """
    from senm_plugin.data.noise_sim import simulate_camera_noise
    rng = np.random.default_rng(seed)
    # a noisy but not extreme camera from the upper part of the SIDD prior (REFERENCE.md)
    shot, read = 0.012, 2.0e-4
    crops = [c for name in TRAIN_IMAGES for c in _random_crops(_read_sample(name), crop, crops_per_image, rng)]
    order = rng.permutation(len(crops))
    paired = order[:num_paired]
    rest = order[num_paired:]
    source, target = rest[:len(rest) // 2], rest[len(rest) // 2:]
    folders = {}

    def write(domain, kind, index, img):
        folder = os.path.join(root, domain, kind)
        os.makedirs(folder, exist_ok=True)
        folders[f'{domain}_{kind}'] = folder
        cv2.imwrite(os.path.join(folder, f'{index:04d}.png'), img)

    for i in paired:
        write('paired', 'gt', i, crops[i])
        write('paired', 'lq', i, simulate_camera_noise(crops[i], shot, read, rng))
    for i in source:
        write('source', 'gt', i, crops[i])
    for i in target:
        write('target', 'lq', i, simulate_camera_noise(crops[i], shot, read, rng))
    for j, name in enumerate(TEST_IMAGES):
        for k, c in enumerate(_random_crops(_read_sample(name), test_crop, 2, rng)):
            write('test', 'gt', 2 * j + k, c)
            write('test', 'lq', 2 * j + k, simulate_camera_noise(c, shot, read, rng))
    return folders, {'shot': shot, 'read': read, 'paired': len(paired), 'source': len(source), 'target': len(target)}


def _load_template(name):
    path = os.path.join(REPO_OPTIONS, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Demo option file {path} not found: install the plugin from its repository with '
                                f'`pip install -e .` so the options/ folder is beside the package.')
    with open(path) as f:
        return yaml.safe_load(f)


def _run_train(opt, opt_path):
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    cmd = [sys.executable, '-m', 'senm_plugin.cli', 'train', '-opt', opt_path]
    print('$ basicsr train -opt', opt_path, flush=True)
    subprocess.run(cmd, check=True)


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


def main(argv=None):
    """Run the demo; returns 0 on success."""
    parser = argparse.ArgumentParser(prog='basicsr demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=os.path.join('results', 'demo'), help='output folder (default results/demo)')
    parser.add_argument('--iters', type=int, default=400, help='denoiser training iterations (default 400)')
    parser.add_argument('--quick', action='store_true', help='a smoke run: 20 iterations, fewer crops')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    iters = 20 if args.quick else args.iters
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    start = time.time()

    _stage('1/3 building camera-noise data from scikit-image sample images')
    folders, noise = make_demo_data(os.path.join(out, 'data'), crops_per_image=4 if args.quick else 12, seed=args.seed)
    print(f'    shot={noise["shot"]}, read={noise["read"]}: {noise["paired"]} pairs, {noise["source"]} clean-only, '
          f'{noise["target"]} noisy-only crops, {len(os.listdir(folders["test_gt"]))} held-out test pairs')

    _stage(f'2/3 training a small ScaoedNet on the {noise["paired"]} real pairs ({iters} iterations)')
    opt = _load_template('demo_scaoednet.yml')
    opt['name'] = f'demo_scaoednet_pairs_seed{args.seed}'
    opt['manual_seed'] = args.seed
    opt['train']['total_iter'] = iters
    opt['logger']['save_checkpoint_freq'] = iters
    opt['val']['val_freq'] = iters
    train_set, val_set = opt['datasets']['train'], opt['datasets']['val']
    train_set['dataroot_gt'], train_set['dataroot_lq'] = folders['paired_gt'], folders['paired_lq']
    val_set['dataroot_gt'], val_set['dataroot_lq'] = folders['test_gt'], folders['test_lq']
    exp_root = os.path.join(os.getcwd(), 'experiments', opt['name'])
    if os.path.isdir(exp_root):  # a re-run starts afresh rather than archiving old demo runs forever
        import shutil
        shutil.rmtree(exp_root)
    _run_train(opt, os.path.join(out, 'demo_scaoednet_pairs.yml'))

    _stage('3/3 testing on held-out pairs')
    scores = evaluate_denoiser(
        os.path.join(exp_root, 'models', 'net_g_latest.pth'), opt['network_g'], folders['test_gt'], folders['test_lq'])
    summary = {'noise': noise, 'iters': iters, 'seconds': round(time.time() - start, 1), 'few_pairs_only': scores}
    with open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    lines = [
        '# basicsr demo', '', f'Camera noise: shot {noise["shot"]}, read {noise["read"]}; {iters} iterations; '
        f'{summary["seconds"]} s.', '', '| input | PSNR (dB) | SSIM |', '|---|---|---|',
        f'| noisy | {scores["noisy_psnr"]:.2f} | {scores["noisy_ssim"]:.4f} |',
        f'| ScaoedNet, {noise["paired"]} real pairs | {scores["psnr"]:.2f} | {scores["ssim"]:.4f} |'
    ]
    with open(os.path.join(out, 'summary.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines[4:]))
    print(f'\nDemo finished in {summary["seconds"]} s; results in {out}', flush=True)
    return 0

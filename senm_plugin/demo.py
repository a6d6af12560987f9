"""``basicsr demo``: the whole pipeline on images that ship with scikit-image, on a CPU in minutes, no downloads.

A small dataset is built by a simulated sRGB camera (``noise.camera``: raw noise on a Bayer mosaic, then demosaicing,
white balance, colour matrix and gamma): a few clean/noisy pairs, clean-only and noisy-only crops, held-out test pairs.
Then: ``prepare folders`` -> SeNM-VAE (small) -> ``generate`` synthetic pairs from the clean-only crops -> ScaoedNet
(small) trained on the few real pairs alone, on fitted-Gaussian + real pairs and on SeNM-VAE synthetic + real pairs
-> noise evaluation (SeNM-VAE against fitted Gaussian / Poisson-Gaussian noise) and denoising PSNR/SSIM on the
held-out pairs. Everything lands in ``results/demo/`` (``summary.md`` with a verdict, ``summary.json``, ``noise/``
pictures). ``run_pipeline`` (stages 2-7) also serves ``benchmarks/bench_fidelity.py`` on real pairs.
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

from senm_plugin.noise.camera import Camera, capture_noisy, render_clean

REPO_OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'options')
# colour images inside scikit-image's package folder (no download); the test images are held out
TRAIN_IMAGES = ('astronaut.png', 'chelsea.png', 'coffee.png', 'motorcycle_left.png', 'hubble_deep_field.jpg',
                'retina.jpg')
TEST_IMAGES = ('rocket.jpg', 'ihc.png')
# the demo camera: raw noise about as strong as a SIDD phone's at a high ISO (noisy crops ~24 dB PSNR)
DEMO_CAMERA = Camera(shot=0.003, read=1e-4)
# each noisy capture is taken at a gain drawn log-uniformly from this range, as a user's photos span ISO settings
# (two ISO stops; benchmarks/RESULTS.md has the demo at one fixed gain too); (1, 1): every capture at DEMO_CAMERA's
DEMO_GAINS = (0.25, 1.0)
STAGES = 7
# how the demo samples synthetic pairs from its SeNM-VAE (basicsr generate options; see README)
# (the temperature is fitted on the real pairs: --temperature auto --calibrate paired_gt paired_lq); on the simulated
# camera `mean` beats `level` on KLD and downstream (benchmarks/RESULTS.md), on real pairs `level` wins
DEMO_GENERATE = {'residual': 'mean', 'temperature': 'auto'}
# SeNM-VAE iterations of the demo: options/senm_cpu.yml's recipe, cut to fit the demo's 10 minutes
DEMO_SENM_ITERS = 600
# share of real pairs in the mixed training sets of the denoisers
REAL_RATIO = 0.5


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


def make_demo_data(root, crop=96, crops_per_image=12, num_paired=6, test_crop=128, seed=0, gains=None):
    """Write the demo's camera-noise data as PNG folders under ``root``; returns ({name: folder}, facts).

    Crops of the training images are split into ``num_paired`` pairs, then halves of clean-only (source) and
    noisy-only (target) crops; the held-out images give the test pairs. One simulated sRGB camera
    (``DEMO_CAMERA``) renders every image: clean ones without noise, noisy ones with raw noise at a gain drawn from
    ``gains`` (default DEMO_GAINS).
    """
    rng = np.random.default_rng(seed)
    low, high = gains or DEMO_GAINS

    def noisy(img):
        gain = low if high == low else float(np.exp(rng.uniform(np.log(low), np.log(high))))
        return capture_noisy(img, DEMO_CAMERA.at_gain(gain), rng)

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
        write('paired', 'gt', i, render_clean(crops[i], DEMO_CAMERA))
        write('paired', 'lq', i, noisy(crops[i]))
    for i in source:
        write('source', 'gt', i, render_clean(crops[i], DEMO_CAMERA))
    for i in target:
        write('target', 'lq', i, noisy(crops[i]))
    for j, name in enumerate(TEST_IMAGES):
        for k, c in enumerate(_random_crops(_read_sample(name), test_crop, 2, rng)):
            write('test', 'gt', 2 * j + k, render_clean(c, DEMO_CAMERA))
            write('test', 'lq', 2 * j + k, noisy(c))
    facts = {
        'shot': DEMO_CAMERA.shot,
        'read': DEMO_CAMERA.read,
        'gains': [low, high],
        'paired': len(paired),
        'source': len(source),
        'target': len(target),
        'test': 2 * len(TEST_IMAGES)
    }
    return folders, facts


def _template_path(name):
    """The demo's option template ``name``: the repository's ``options/`` (a source checkout or editable install,
    where users edit it), else the copy a wheel ships as ``senm_plugin.options``."""
    path = os.path.join(REPO_OPTIONS, name)
    if os.path.isfile(path):
        return path
    try:
        from importlib.resources import files
        packaged = files('senm_plugin.options') / name
        if packaged.is_file():
            return str(packaged)
    except ModuleNotFoundError:
        pass
    raise FileNotFoundError(f'Demo option file {name} found neither in {REPO_OPTIONS} nor in the installed package '
                            '(senm_plugin/options); reinstall the plugin (pip install -e . from its repository)')


def _load_template(name):
    with open(_template_path(name)) as f:
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


def _verdicts(summary):
    """Sentences that say whether the learned noise beat each baseline and whether its pairs lifted the denoiser."""
    noise, den = summary['noise'], summary['denoise']
    gen = noise['generated']
    lines = []
    for key in ('gaussian', 'poisson_gaussian', 'gaussian_per_image'):
        if key not in noise:
            continue
        base = noise[key]
        wins = [m.upper() for m in ('kld', 'akld') if gen[m] < base[m]]
        losses = [m.upper() for m in ('kld', 'akld') if gen[m] >= base[m]]
        if not losses:
            lines.append(f'- SeNM-VAE noise is closer to the real noise than {base["label"]} noise on KLD and AKLD.')
        elif not wins:
            lines.append(f'- SeNM-VAE noise does NOT beat {base["label"]} noise: worse on KLD and AKLD.')
        else:
            lines.append(f'- SeNM-VAE noise beats {base["label"]} noise on {" and ".join(wins)} but not on '
                         f'{" and ".join(losses)}.')
    lines.append(
        f'- Generated noise std {gen["noise_std_8bit"]:.2f} against the real {summary["real_noise_std_8bit"]:.2f} '
        '(8-bit levels).')
    if 'colour_shift_8bit' in gen:
        shift = gen['colour_shift_8bit']
        lines.append(f'- Colour cast of the generated images: worst channel shift {shift:.2f} (8-bit levels), '
                     f'{"within" if shift <= 2 else "NOT within"} 2.')
    synth, pairs = den['synthetic_plus_pairs']['psnr'], den['pairs_only']['psnr']
    verb = 'lifted' if synth > pairs else 'did NOT lift'
    lines.append(f'- SeNM-VAE synthetic pairs {verb} the denoiser: {synth:.2f} dB against {pairs:.2f} dB on the real '
                 f'pairs alone ({synth - pairs:+.2f} dB).')
    if 'gaussian_plus_pairs' in den:
        gauss = den['gaussian_plus_pairs']['psnr']
        verb = 'beat' if synth > gauss else 'did NOT beat'
        lines.append(f'- They {verb} pairs synthesized with the fitted Gaussian: {gauss:.2f} dB ({synth - gauss:+.2f} '
                     'dB).')
    best_key = max((k for k in den if isinstance(den[k], dict)), key=lambda k: den[k]['psnr'])
    best, noisy = den[best_key], den['noisy_psnr']
    gain = 'above' if best['psnr'] > noisy else 'NOT above'
    lines.append(f'- The best denoiser is {gain} the noisy input on PSNR: {best["psnr"]:.2f} dB against {noisy:.2f} dB '
                 f'(SSIM {best["ssim"]:.4f} against {den["noisy_ssim"]:.4f}); at these training budgets the '
                 'denoisers are small and short-trained.')
    return lines


def _summary_markdown(summary, title='basicsr demo'):
    facts, noise, den = summary['data'], summary['noise'], summary['denoise']
    gains = facts.get('gains') or [1, 1]
    gain_text = f', gain {gains[0]:g}-{gains[1]:g} per capture' if gains[0] != gains[1] else ''
    camera = facts.get('camera') or (f'simulated sRGB pipeline (raw shot {facts["shot"]}, read {facts["read"]}'
                                     f'{gain_text}; Bayer mosaic, demosaicing, white balance, colour matrix, gamma)')
    lines = [
        f'# {title}', '',
        f'Camera: {camera}. Data: {facts["paired"]} real pairs, {facts["source"]} clean-only and '
        f'{facts["target"]} noisy-only crops, {facts["test"]} held-out test pairs; {summary["synthetic_pairs"]} '
        f'synthetic pairs. Iterations: SeNM-VAE {summary["iters"]["senm"]}, ScaoedNet {summary["iters"]["denoiser"]}. '
        f'Run time {summary["seconds"]} s.', '', '## Verdict', ''
    ]
    lines += _verdicts(summary)
    lines += [
        '', '## Noise quality on the held-out pairs (lower is better)', '',
        '| noise model | KLD | AKLD | noise std (8-bit) |', '|---|---|---|---|'
    ]
    for entry in noise.values():
        lines.append(f'| {entry["label"]} | {entry["kld"]:.4f} | {entry["akld"]:.4f} | {entry["noise_std_8bit"]:.2f} |')
    lines.append(f'| real noise | 0 | 0 | {summary["real_noise_std_8bit"]:.2f} |')
    lines += [
        '', '## Denoising on the held-out pairs', '', '| input / denoiser | PSNR (dB) | SSIM |', '|---|---|---|',
        f'| noisy input | {den["noisy_psnr"]:.2f} | {den["noisy_ssim"]:.4f} |'
    ]
    for key, label in DENOISERS:
        if key in den:
            label = label.format(pairs=facts['paired'])
            lines.append(f'| ScaoedNet, {label} | {den[key]["psnr"]:.2f} | {den[key]["ssim"]:.4f} |')
    lines += [
        '', 'Pictures: `noise/grid.png` (clean | real noisy | generated | real noise | generated noise), '
        '`noise/histogram.png`, `noise/noise_level.png`; full noise report: `noise/report.md`.'
    ]
    return '\n'.join(lines) + '\n'


# the denoisers the demo trains: (key, label); each differs only in its training pairs
DENOISERS = (('pairs_only', '{pairs} real pairs only'),
             ('gaussian_plus_pairs', 'fitted-Gaussian synthetic + real pairs'), ('synthetic_plus_pairs',
                                                                                 'SeNM-VAE synthetic + real pairs'))


def gaussian_pairs(folders, out, seed):
    """Pairs of the clean-only crops with Gaussian noise of the sigma fitted on the real pairs (the textbook
    alternative to a learned noise model), as PNG folders; returns (gt folder, lq folder, sigma)."""
    from senm_plugin.evaluate import baseline_noisy
    from senm_plugin.generate import STREAM_LATENT
    from senm_plugin.metrics.noise_stats import fit_gaussian

    def read(folder):
        return {n: cv2.imread(os.path.join(folder, n)) for n in sorted(os.listdir(folder))}

    gt, lq = read(folders['paired_gt']), read(folders['paired_lq'])
    model = fit_gaussian([gt[n] / 255. for n in gt], [lq[n] / 255. for n in gt])
    clean = read(folders['source_gt'])
    gt_dir, lq_dir = os.path.join(out, 'gt'), os.path.join(out, 'lq')
    for folder in (gt_dir, lq_dir):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    noisy = baseline_noisy(model, list(clean.values()), seed, STREAM_LATENT)
    for (name, x), y in zip(clean.items(), noisy):
        cv2.imwrite(os.path.join(gt_dir, name), x)
        cv2.imwrite(os.path.join(lq_dir, name), y)
    return gt_dir, lq_dir, model.sigma


def train_denoisers(folders, lmdb_root, synth_roots, out, iters, seed):
    """Train the demo ScaoedNet once per entry of DENOISERS; returns {key: scores on the test pairs}."""
    scores = {}
    for key, _ in DENOISERS:
        opt = _load_template('demo_scaoednet.yml')
        opt['name'] = f'demo_scaoednet_{key}_seed{seed}'
        train = opt['datasets']['train']
        real = {
            'dataroot_gt': os.path.join(lmdb_root, 'paired_gt.lmdb'),
            'dataroot_lq': os.path.join(lmdb_root, 'paired_lq.lmdb'),
            'io_backend': {
                'type': 'lmdb'
            }
        }
        if key == 'pairs_only':
            train.update(real)
        else:
            synth_gt, synth_lq, backend = synth_roots[key]
            train.update(
                type='MixedPairDataset',
                dataroot_synth_gt=synth_gt,
                dataroot_synth_lq=synth_lq,
                dataroot_real_gt=real['dataroot_gt'],
                dataroot_real_lq=real['dataroot_lq'],
                io_backend_synth={'type': backend},
                io_backend_real=real['io_backend'],
                real_ratio=REAL_RATIO)
            train.pop('io_backend', None)
        opt['datasets']['val'].update(dataroot_gt=folders['test_gt'], dataroot_lq=folders['test_lq'])
        exp_root = _train(opt, out, iters, seed)
        scores[key] = evaluate_denoiser(
            os.path.join(exp_root, 'models', 'net_g_latest.pth'), opt['network_g'], folders['test_gt'],
            folders['test_lq'])
    return scores


def prepare_domains(folders, lmdb_root, seed):
    """``basicsr prepare folders`` on the demo's three domains; returns the LMDB folder."""
    from senm_plugin.data import prepare
    code = prepare.main([
        'folders', '--paired-gt', folders['paired_gt'], '--paired-lq', folders['paired_lq'], '--source',
        folders['source_gt'], '--target', folders['target_lq'], '--out', lmdb_root, '--seed',
        str(seed), '--workers', '1', '--overwrite'
    ])
    if code:
        raise SystemExit(f'basicsr demo: prepare failed ({code})')
    return lmdb_root


def train_senmvae(senm, folders, lmdb_root, out, iters, seed):
    """Train the demo SeNM-VAE (option template ``senm``); returns (experiment folder, option file written)."""
    senm['name'] = f'demo_senm_seed{seed}'
    data = senm['datasets']['train']
    for key, name in (('dataroot_paired_gt', 'paired_gt'), ('dataroot_paired_lq', 'paired_lq'),
                      ('dataroot_source', 'source'), ('dataroot_target', 'target')):
        data[key] = os.path.join(lmdb_root, f'{name}.lmdb')
    senm['datasets']['val'].update(name='demo_test', dataroot_gt=folders['test_gt'], dataroot_lq=folders['test_lq'],
                                   io_backend={'type': 'disk'})
    root = _train(senm, out, iters, seed)
    return root, os.path.join(out, 'options', f'{senm["name"]}.yml')


def evaluate_noise_model(folders, model, network_opt, out, seed, temperature, sampling=None):
    """``basicsr evaluate noise`` of the demo SeNM-VAE on the test pairs, sampled as ``sampling`` (default
    DEMO_GENERATE) says at the ``temperature`` fitted by generate; returns the report."""
    from senm_plugin import evaluate
    sampling = sampling or DEMO_GENERATE
    flags = [f'--residual={sampling["residual"]}'] if sampling.get('residual') else []
    code = evaluate.main([
        'noise', '--clean', folders['test_gt'], '--real', folders['test_lq'], '--model', model, '--network-opt',
        network_opt, '--out', out, '--seed',
        str(seed), '--device', 'cpu', f'--temperature={temperature}', *flags
    ])
    if code:
        raise SystemExit(f'basicsr demo: evaluate failed ({code})')
    with open(os.path.join(out, 'report.json')) as f:
        return json.load(f)


def generate_synthetic(senm_root, senm_opt, lmdb_root, out, seed, sampling=None):
    """``basicsr generate`` on the clean-only LMDB sampled as ``sampling`` (default DEMO_GENERATE; temperature
    fitted on the paired LMDBs); returns the manifest."""
    from senm_plugin.generate import run_generate
    return run_generate({
        'model': os.path.join(senm_root, 'models', 'net_g_latest.pth'),
        'level_model': os.path.join(senm_root, 'models', 'net_le_latest.pth'),
        'network_g': senm_opt,
        'input': os.path.join(lmdb_root, 'source.lmdb'),
        'out': out,
        'levels': f'estimate:{os.path.join(lmdb_root, "target.lmdb")}',
        'seed': seed,
        'device': 'cpu',
        'overwrite': True,
        'calibrate': [os.path.join(lmdb_root, 'paired_gt.lmdb'),
                      os.path.join(lmdb_root, 'paired_lq.lmdb')],
        **(sampling or DEMO_GENERATE)
    })


def run_pipeline(folders, facts, out, iters, den_iters, seed, sampling=None):
    """Stages 2-7 on the image folders of ``make_demo_data``'s layout (any real data cut the same way, too):
    prepare, SeNM-VAE, generate (sampled as ``sampling``, default DEMO_GENERATE), Gaussian pairs, three denoisers,
    noise evaluation; returns the summary dict (the caller adds its run time as ``seconds``)."""
    sampling = sampling or DEMO_GENERATE
    _stage(2, 'basicsr prepare folders: the three domains as LMDBs')
    lmdb_root = prepare_domains(folders, os.path.join(out, 'lmdb'), seed)

    _stage(3, f'training a small SeNM-VAE on the three domains ({iters} iterations)')
    senm_root, senm_opt = train_senmvae(_load_template('senm_cpu.yml'), folders, lmdb_root, out, iters, seed)

    _stage(4, 'basicsr generate: synthetic pairs from the clean-only crops, levels estimated from noisy-only crops')
    synth = os.path.join(out, 'synthetic')
    manifest = generate_synthetic(senm_root, senm_opt, lmdb_root, synth, seed, sampling)
    temperature = manifest['settings']['temperature']

    _stage(5, 'Gaussian noise fitted on the real pairs, on the same clean-only crops (the textbook alternative)')
    gauss_gt, gauss_lq, sigma = gaussian_pairs(folders, os.path.join(out, 'gaussian'), seed)
    print(f'    sigma = {sigma * 255:.2f} (8-bit levels)')

    _stage(6, f'training ScaoedNet three ways: {facts["paired"]} real pairs alone, fitted-Gaussian + real pairs, '
           f'SeNM-VAE synthetic + real pairs ({den_iters} iterations each)')
    den_scores = train_denoisers(folders, lmdb_root, {
        'gaussian_plus_pairs': (gauss_gt, gauss_lq, 'disk'),
        'synthetic_plus_pairs': (os.path.join(synth, 'gt.lmdb'), os.path.join(synth, 'lq.lmdb'), 'lmdb')
    }, out, den_iters, seed)

    _stage(7, 'basicsr evaluate noise: SeNM-VAE against fitted Gaussian and Poisson-Gaussian noise')
    senm_ckpt = os.path.join(senm_root, 'models', 'net_g_latest.pth')
    report = evaluate_noise_model(folders, senm_ckpt, senm_opt, os.path.join(out, 'noise'), seed, temperature,
                                  sampling)
    keys = ('label', 'kld', 'akld', 'noise_std_8bit', 'colour_shift_8bit')
    return {
        'data': facts,
        'iters': {'senm': iters, 'denoiser': den_iters},
        'synthetic_pairs': len(manifest['images']),
        'generate': {**sampling, 'temperature_fitted': temperature},
        'noise': {k: {key: v[key] for key in keys} for k, v in report['metrics'].items()},
        'real_noise_std_8bit': report['real_noise_std_8bit'],
        'denoise': {
            'noisy_psnr': den_scores['pairs_only']['noisy_psnr'],
            'noisy_ssim': den_scores['pairs_only']['noisy_ssim'],
            **{k: {'psnr': v['psnr'], 'ssim': v['ssim']} for k, v in den_scores.items()}
        }
    }


def write_summary(summary, out, title='basicsr demo'):
    """``summary.json`` and ``summary.md`` in ``out``; returns the Markdown text."""
    with open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    text = _summary_markdown(summary, title)
    with open(os.path.join(out, 'summary.md'), 'w') as f:
        f.write(text)
    return text


def default_iters(iters, den_iters, quick=False, senm_iters=None):
    """(SeNM-VAE, ScaoedNet) iterations: as given, else 10 each for a quick run, else ``senm_iters`` (the demo's
    DEMO_SENM_ITERS; None: options/senm_cpu.yml's) and the denoiser template's."""
    if quick:
        return 10, 10
    return (iters or senm_iters or _load_template('senm_cpu.yml')['train']['total_iter'],
            den_iters or _load_template('demo_scaoednet.yml')['train']['total_iter'])


def main(argv=None):
    """Run the demo; returns 0 on success."""
    parser = argparse.ArgumentParser(prog='basicsr demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=os.path.join('results', 'demo'), help='output folder (default results/demo)')
    parser.add_argument('--iters', type=int, help=f'SeNM-VAE training iterations (default {DEMO_SENM_ITERS})')
    parser.add_argument('--denoiser-iters', type=int,
                        help='ScaoedNet training iterations (default: options/demo_scaoednet.yml)')
    parser.add_argument('--quick', action='store_true', help='a smoke run: 10 iterations each, fewer crops')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    iters, den_iters = default_iters(args.iters, args.denoiser_iters, args.quick, DEMO_SENM_ITERS)
    if iters < 1 or den_iters < 1:
        parser.error('--iters and --denoiser-iters must be >= 1')
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    start = time.time()

    _stage(1, 'building camera-noise data from scikit-image sample images')
    folders, facts = make_demo_data(os.path.join(out, 'data'), crops_per_image=4 if args.quick else 12, seed=args.seed)
    print(f'    {facts["paired"]} pairs, {facts["source"]} clean-only, {facts["target"]} noisy-only crops, '
          f'{facts["test"]} held-out test pairs')
    summary = run_pipeline(folders, facts, out, iters, den_iters, args.seed)
    summary['seconds'] = round(time.time() - start, 1)
    print('\n' + write_summary(summary, out))
    print(f'Demo finished in {summary["seconds"]} s; results in {out}', flush=True)
    return 0

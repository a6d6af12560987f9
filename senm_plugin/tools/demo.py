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
import os
import shutil
import time

import cv2

from senm_plugin.noise.baselines import baseline_noisy, fit_gaussian
from senm_plugin.noise.seeds import STREAM_LATENT
from senm_plugin.tools.demo_data import make_demo_data
from senm_plugin.tools.demo_report import DENOISERS, write_summary
from senm_plugin.tools.demo_train import cpu_cores, evaluate_denoiser, load_template, run_train, run_trains
from senm_plugin.tools.evaluate import noise_args, run_noise
from senm_plugin.tools.evaluate_report import jsonable
from senm_plugin.tools.generate import run_generate
from senm_plugin.tools.prepare import prepare_args, run_prepare

STAGES = 7
# the option templates of the demo's networks, under options/ (shipped in the wheel as senm_plugin.options)
SENM_TEMPLATE, DENOISER_TEMPLATE = 'train/senm_cpu.yml', 'demo/demo_scaoednet.yml'
# how the demo samples synthetic pairs from its SeNM-VAE (basicsr generate options; see README)
# (the temperature is fitted on the real pairs: --temperature auto --calibrate paired_gt paired_lq); on the simulated
# camera `mean` beats `level` on KLD and downstream (benchmarks/RESULTS.md), on real pairs `level` wins
DEMO_GENERATE = {'residual': 'mean', 'temperature': 'auto'}
# SeNM-VAE training of the demo: options/train/senm_cpu.yml on 24x24 crops (its 32x32 cost 1.7x the time per
# iteration) for 900 iterations, which beats both fitted baselines on KLD and AKLD as 1,500 iterations on 32x32 crops
# did, in 41% of the time, so that the demo ends within 10 minutes on 2 cores (benchmarks/RESULTS.md, "The demo in
# 10 minutes"; 600 iterations on 32x32 lost on KLD)
DEMO_SENM_ITERS, DEMO_SENM_PATCH = 900, 24
# share of real pairs in the mixed training sets of the denoisers
REAL_RATIO = 0.5


def stage(k, text):
    """Announce stage ``k`` of the demo."""
    print(f'\n==> {k}/{STAGES} {text}', flush=True)


def gaussian_pairs(folders, out, seed):
    """Pairs of the clean-only crops with Gaussian noise of the sigma fitted on the real pairs (the textbook
    alternative to a learned noise model), as PNG folders; returns (gt folder, lq folder, sigma)."""
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


def train_denoisers(folders, lmdb_root, synth_roots, out, iters, seed, jobs=1):
    """Train the demo ScaoedNet on the real pairs alone and once per entry of DENOISERS with training pairs in
    ``synth_roots`` ({key: (gt root, lq root, backend)}), ``jobs`` at a time; returns {key: scores on the test
    pairs}."""
    keys = [key for key, _ in DENOISERS if key == 'pairs_only' or key in synth_roots]
    opts = [denoiser_options(key, folders, lmdb_root, synth_roots, seed) for key in keys]
    roots = run_trains(opts, out, iters, seed, jobs)
    return {
        key: evaluate_denoiser(os.path.join(root, 'models', 'net_g_latest.pth'), opt['network_g'], folders['test_gt'],
                               folders['test_lq'])
        for key, opt, root in zip(keys, opts, roots)
    }


def denoiser_options(key, folders, lmdb_root, synth_roots, seed):
    """The option dict of the demo ScaoedNet ``key`` of DENOISERS: the real pairs alone, or mixed with the pairs of
    ``synth_roots[key]``."""
    opt = load_template(DENOISER_TEMPLATE)
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
    return opt


def prepare_domains(folders, lmdb_root, seed):
    """``basicsr prepare folders`` on the demo's three domains; returns the LMDB folder."""
    run_prepare(prepare_args('folders', paired_gt=folders['paired_gt'], paired_lq=folders['paired_lq'],
                             source=folders['source_gt'], target=folders['target_lq'], out=lmdb_root, seed=seed,
                             workers=1, overwrite=True))
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
    root = run_train(senm, out, iters, seed)
    return root, os.path.join(out, 'options', f'{senm["name"]}.yml')


def evaluate_noise_model(folders, model, network_opt, out, seed, temperature, sampling=None):
    """``basicsr evaluate noise`` of the demo SeNM-VAE on the test pairs, sampled as ``sampling`` (default
    DEMO_GENERATE) says at the ``temperature`` fitted by generate; returns the report."""
    sampling = sampling or DEMO_GENERATE
    args = noise_args(clean=folders['test_gt'], real=folders['test_lq'], model=model, network_opt=network_opt,
                      out=out, seed=seed, device='cpu', temperature=float(temperature),
                      residual=sampling.get('residual') or None)
    return jsonable(run_noise(args))


def generate_synthetic(senm_root, senm_opt, lmdb_root, out, seed, sampling=None):
    """``basicsr generate`` on the clean-only LMDB sampled as ``sampling`` (default DEMO_GENERATE; temperature
    fitted on the paired LMDBs); returns the manifest."""
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


def run_pipeline(folders, facts, out, iters, den_iters, seed, sampling=None, jobs=1, patch=None):
    """Stages 2-7 on the image folders of ``make_demo_data``'s layout (any real data cut the same way, too):
    prepare, SeNM-VAE (trained on ``patch``-sized crops, default the template's), generate (sampled as ``sampling``,
    default DEMO_GENERATE), Gaussian pairs, the denoisers (``jobs`` at a time), noise evaluation; returns the summary
    dict (the caller adds its run time as ``seconds``)."""
    sampling = sampling or DEMO_GENERATE
    stage(2, 'basicsr prepare folders: the three domains as LMDBs')
    lmdb_root = prepare_domains(folders, os.path.join(out, 'lmdb'), seed)

    senm = load_template(SENM_TEMPLATE)
    if patch:
        senm['datasets']['train']['gt_size'] = patch
    crop = senm['datasets']['train']['gt_size']
    stage(3, f'training a small SeNM-VAE on the three domains ({iters} iterations on {crop}x{crop} crops)')
    senm_root, senm_opt = train_senmvae(senm, folders, lmdb_root, out, iters, seed)

    stage(4, 'basicsr generate: synthetic pairs from the clean-only crops, levels estimated from noisy-only crops')
    synth = os.path.join(out, 'synthetic')
    manifest = generate_synthetic(senm_root, senm_opt, lmdb_root, synth, seed, sampling)
    temperature = manifest['settings']['temperature']

    stage(5, 'Gaussian noise fitted on the real pairs, on the same clean-only crops (the textbook alternative)')
    gauss_gt, gauss_lq, sigma = gaussian_pairs(folders, os.path.join(out, 'gaussian'), seed)
    print(f'    sigma = {sigma * 255:.2f} (8-bit levels)')

    roots = {'gaussian_plus_pairs': (gauss_gt, gauss_lq, 'disk'),
             'synthetic_plus_pairs': (os.path.join(synth, 'gt.lmdb'), os.path.join(synth, 'lq.lmdb'), 'lmdb')}
    if 'source_lq' in folders:  # the true noise of the clean-only images, where the data has it: the yardstick
        roots['true_noise_plus_pairs'] = (folders['source_gt'], folders['source_lq'], 'disk')
    stage(6, f'training ScaoedNet {len(roots) + 1} ways: {facts["paired"]} real pairs alone, fitted-Gaussian + real '
          f'pairs, SeNM-VAE synthetic + real pairs{", true noise + real pairs" if len(roots) > 2 else ""} '
          f'({den_iters} iterations each)')
    den_scores = train_denoisers(folders, lmdb_root, roots, out, den_iters, seed, jobs)

    stage(7, 'basicsr evaluate noise: SeNM-VAE against fitted Gaussian and Poisson-Gaussian noise')
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


def default_iters(iters, den_iters, quick=False, senm_iters=None):
    """(SeNM-VAE, ScaoedNet) iterations: as given, else 10 each for a quick run, else ``senm_iters`` (the demo's
    DEMO_SENM_ITERS; None: options/train/senm_cpu.yml's) and the denoiser template's."""
    if quick:
        return 10, 10
    return (iters or senm_iters or load_template(SENM_TEMPLATE)['train']['total_iter'],
            den_iters or load_template(DENOISER_TEMPLATE)['train']['total_iter'])


def main(argv=None):
    """Run the demo; returns 0 on success."""
    parser = argparse.ArgumentParser(prog='basicsr demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=os.path.join('results', 'demo'), help='output folder (default results/demo)')
    parser.add_argument('--iters', type=int, help=f'SeNM-VAE training iterations (default {DEMO_SENM_ITERS})')
    parser.add_argument('--denoiser-iters', type=int,
                        help='ScaoedNet training iterations (default: options/demo/demo_scaoednet.yml)')
    parser.add_argument('--quick', action='store_true', help='a smoke run: 10 iterations each, fewer crops')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--jobs', type=int, default=min(2, cpu_cores()),
                        help='denoisers trained at a time, sharing the CPU cores (default 2 where there are 2 cores)')
    args = parser.parse_args(argv)
    iters, den_iters = default_iters(args.iters, args.denoiser_iters, args.quick, DEMO_SENM_ITERS)
    if iters < 1 or den_iters < 1 or args.jobs < 1:
        parser.error('--iters, --denoiser-iters and --jobs must be >= 1')
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    start = time.time()

    stage(1, 'building camera-noise data from scikit-image sample images')
    folders, facts = make_demo_data(os.path.join(out, 'data'), crops_per_image=4 if args.quick else 12, seed=args.seed)
    print(f'    {facts["paired"]} pairs, {facts["source"]} clean-only, {facts["target"]} noisy-only crops, '
          f'{facts["test"]} held-out test pairs')
    summary = run_pipeline(folders, facts, out, iters, den_iters, args.seed, jobs=args.jobs, patch=DEMO_SENM_PATCH)
    summary['seconds'] = round(time.time() - start, 1)
    print('\n' + write_summary(summary, out))
    print(f'Demo finished in {summary["seconds"]} s; results in {out}', flush=True)
    return 0

"""`basicsr evaluate noise`: metrics against closed forms, the Gaussian-baseline sanity check, report files, CLI."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from helpers import TINY_LEVEL_OPT, TINY_SENMVAE_OPT, save_tiny_senmvae
from senm_plugin.errors import EvaluateError
from senm_plugin.noise.levels import paired_levels
from senm_plugin.tools.evaluate import evaluate_noise, main

SIGMA = 10.0


def _clean_images(num=3, size=96, seed=0):
    """Smooth images with values in [60, 190], so noise of std 10 is almost never clipped."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    imgs = []
    for _ in range(num):
        phase = rng.uniform(0, 2 * np.pi, 3)
        img = np.stack([125 + 60 * np.sin(2 * np.pi * (xx + yy * (c + 1) / 3) + phase[c]) for c in range(3)], -1)
        imgs.append(img.round().astype(np.uint8))
    return imgs


def _add_noise(imgs, sigma, seed):
    rng = np.random.default_rng(seed)
    return [np.clip(np.round(x + rng.normal(0, sigma, x.shape)), 0, 255).astype(np.uint8) for x in imgs]


class MeanColour(torch.nn.Module):
    """A stand-in FID feature extractor (per-channel mean and std), so FID runs without Inception weights."""

    def forward(self, x):
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)


def test_gaussian_baseline_matches_gaussian_noise(tmp_path):
    clean = _clean_images()
    real = _add_noise(clean, SIGMA, 1)
    too_strong = _add_noise(clean, 3 * SIGMA, 2)
    report = evaluate_noise(clean, real, too_strong, str(tmp_path / 'r'), label='x3 noise', seed=0, verbose=False,
                            fid_weights=str(tmp_path / 'no_weights.pth'))
    metrics = report['metrics']
    # the fitted sigma is the root mean square of the real noise (hand-computed)
    rms = np.sqrt(np.mean([((y.astype(float) - x)**2).mean() for x, y in zip(clean, real)]))
    assert report['baselines']['gaussian']['sigma_8bit'] == pytest.approx(rms, rel=1e-9)
    assert rms == pytest.approx(SIGMA, rel=0.02)
    # Gaussian noise of the right sigma scores ~0 against Gaussian 'real' noise; the x3 noise does not (AKLD of two
    # independent draws stays above 0: its 7x7 local variances are noisy estimates)
    assert metrics['gaussian']['kld'] < 0.03 and metrics['gaussian']['akld'] < 0.08
    assert metrics['generated']['kld'] > 10 * metrics['gaussian']['kld']
    assert metrics['generated']['akld'] > 10 * metrics['gaussian']['akld']
    # AKLD of noise with 3x the std: KL(N(0, 9 s^2) || N(0, s^2)) = (9 - 1 - ln 9) / 2 = 2.90, up to local noise
    assert metrics['generated']['akld'] == pytest.approx((9 - 1 - np.log(9)) / 2, rel=0.3)
    # Poisson-Gaussian on signal-independent noise: a ~ 0, b ~ sigma^2
    pg = report['baselines']['poisson_gaussian']
    assert pg['b'] == pytest.approx((SIGMA / 255)**2, rel=0.15)
    assert metrics['poisson_gaussian']['kld'] < 0.05
    assert report['closest_by_kld'] in ('gaussian', 'poisson_gaussian')
    assert report['fid'].startswith('FID skipped:') and metrics['generated']['fid'] is None

    out = tmp_path / 'r'
    for name in ('report.json', 'report.md', 'grid.png', 'histogram.png', 'noise_level.png'):
        assert (out / name).is_file(), name
    saved = json.load(open(out / 'report.json'))
    assert saved['metrics']['gaussian']['kld'] == pytest.approx(metrics['gaussian']['kld'])
    assert saved['metrics']['generated']['fid'] is None
    assert set(saved['per_image']) == {'0000', '0001', '0002'}
    md = (out / 'report.md').read_text()
    assert '| x3 noise |' in md and 'Gaussian (fitted)' in md and 'FID skipped' in md and '![grid](grid.png)' in md
    grid = cv2.imread(str(out / 'grid.png'))
    assert grid.shape[0] > 3 * 128 and grid.shape[1] > 5 * 128


def test_per_image_gaussian_baseline_takes_each_pairs_sigma(tmp_path):
    clean = _clean_images()
    real = [_add_noise([x], sigma, i)[0] for i, (x, sigma) in enumerate(zip(clean, (3., 8., 20.)))]
    report = evaluate_noise(clean, real, real, str(tmp_path / 'r'), seed=0, verbose=False,
                            fid_weights=str(tmp_path / 'no_weights.pth'))
    sigmas = report['baselines']['gaussian_per_image']['sigma_8bit']
    assert sigmas == pytest.approx([np.std(y.astype(float) - x, ddof=1) for x, y in zip(clean, real)], rel=1e-6)
    metrics = report['metrics']
    assert metrics['gaussian_per_image']['label'] == 'Gaussian (per-image sigma)'
    # noise of three different strengths: one pooled sigma fits none of them, each image's own sigma fits each
    assert metrics['gaussian_per_image']['akld'] < 0.1 < metrics['gaussian']['akld']


def test_identical_noise_scores_zero_and_fid_runs(tmp_path):
    clean = _clean_images(num=4, size=48)
    real = _add_noise(clean, SIGMA, 3)
    report = evaluate_noise(clean, real, [r.copy() for r in real], str(tmp_path), baselines=False,
                            fid_feature_extractor=MeanColour(), verbose=False)
    m = report['metrics']['generated']
    # KLD of equal histograms is only the reference's 1e-8 smoothing: at most 256 * 1e-8
    assert m['kld'] == pytest.approx(0, abs=2.6e-6) and m['akld'] == pytest.approx(0, abs=1e-12)
    assert m['fid'] == pytest.approx(0, abs=1e-6)
    assert set(report['metrics']) == {'generated'}
    assert report['fid'].startswith('FID computed')


def test_paired_levels_and_errors(tmp_path):
    clean = _clean_images(num=2, size=32)
    real = _add_noise(clean, SIGMA, 4)
    expect = [np.std(y / 255. - x / 255., ddof=1) for x, y in zip(clean, real)]
    np.testing.assert_allclose(paired_levels(clean, real), expect)
    with pytest.raises(EvaluateError, match='differ in size'):
        evaluate_noise(clean, real, [real[0], real[1][:16]], str(tmp_path), verbose=False)
    with pytest.raises(EvaluateError, match='no images'):
        evaluate_noise([], [], [], str(tmp_path), verbose=False)


def test_line_plot_is_written_with_missing_values(tmp_path):
    from senm_plugin.tools.plots import plot_lines
    x = np.linspace(0, 255, 16)
    series = {'real': (x, 5 + 0.01 * x), 'generated': (x, np.full(16, 6.0)), 'gaussian': (x, np.full(16, np.nan))}
    path = plot_lines(str(tmp_path / 'p.png'), series, {'generated': 'ours'}, 'title', 'x', 'y', log_y=True)
    img = cv2.imread(path)
    assert img.shape == (400, 600, 3) and (img < 250).any()


def _write(folder, imgs, names):
    os.makedirs(folder, exist_ok=True)
    for img, name in zip(imgs, names):
        cv2.imwrite(os.path.join(folder, f'{name}.png'), img)
    return folder


def test_command_line_with_generated_folder_and_model(tmp_path, capsys, one_thread):
    names = ['a', 'b', 'c']
    clean = _clean_images(num=3, size=32)
    real = _add_noise(clean, SIGMA, 5)
    clean_dir = _write(str(tmp_path / 'clean'), clean, names)
    real_dir = _write(str(tmp_path / 'real'), real, names)
    gen_dir = _write(str(tmp_path / 'gen'), _add_noise(clean, SIGMA, 6), names)

    assert main(['noise', '--clean', clean_dir, '--real', real_dir, '--generated', gen_dir, '--out',
                 str(tmp_path / 'r1'), '--fid-weights', str(tmp_path / 'none.pth')]) == 0
    printed = capsys.readouterr().out
    assert 'FID skipped' in printed and '| SeNM-VAE |' in printed
    assert json.load(open(tmp_path / 'r1' / 'report.json'))['num_images'] == 3

    model, _, _ = save_tiny_senmvae(str(tmp_path / 'models'))
    assert main(['noise', '--clean', clean_dir, '--real', real_dir, '--model', model, '--network-opt',
                 json.dumps(TINY_SENMVAE_OPT), '--out', str(tmp_path / 'r2'), '--device', 'cpu',
                 '--fid-weights', str(tmp_path / 'none.pth')]) == 0
    report = json.load(open(tmp_path / 'r2' / 'report.json'))
    assert report['settings']['levels'] == 'paired'
    assert report['settings']['levels_used']['mean'] == pytest.approx(np.mean(paired_levels(clean, real)))
    # levels estimated by the level network saved beside the model (the same helper as basicsr generate's)
    from senm_plugin.data.image_set import ImageSet
    from senm_plugin.noise.levels import estimate_levels
    from senm_plugin.noise.model import level_model_beside, load_level_net
    assert main(['noise', '--clean', clean_dir, '--real', real_dir, '--model', model, '--network-opt',
                 json.dumps(TINY_SENMVAE_OPT), '--level-network-opt', json.dumps(TINY_LEVEL_OPT), '--levels',
                 f'estimate:{real_dir}', '--level-pick', 'mean', '--out', str(tmp_path / 'r5'), '--device', 'cpu',
                 '--fid-weights', str(tmp_path / 'none.pth')]) == 0
    estimates = estimate_levels(load_level_net(level_model_beside(model), TINY_LEVEL_OPT), ImageSet(real_dir))
    used = json.load(open(tmp_path / 'r5' / 'report.json'))['settings']['levels_used']
    assert used['min'] == used['max'] == pytest.approx(estimates.mean())

    # a `basicsr generate` output folder stands for its lq images
    from senm_plugin.tools.generate import run_generate
    run_generate({'model': model, 'input': clean_dir, 'out': str(tmp_path / 'synth'), 'network_g': TINY_SENMVAE_OPT,
                  'device': 'cpu'}, progress=False)
    assert main(['noise', '--clean', clean_dir, '--real', real_dir, '--generated', str(tmp_path / 'synth'),
                 '--out', str(tmp_path / 'r4'), '--fid-weights', str(tmp_path / 'none.pth')]) == 0

    os.remove(os.path.join(gen_dir, 'b.png'))
    assert main(['noise', '--clean', clean_dir, '--real', real_dir, '--generated', gen_dir, '--out',
                 str(tmp_path / 'r3')]) == 1
    assert "lacks 1 image(s) of --clean, e.g. ['b']" in capsys.readouterr().err


@pytest.mark.parametrize('flags, message', [
    (['--max-images', '-2'], '--max-images must be >= 1, got -2'),
    (['--temperature', '-2'], '--temperature must be a finite number >= 0, got -2.0'),
    (['--batch-size', '-1'], '--batch-size must be >= 1, got -1'),
    (['--seed', '-1'], '--seed must be >= 0, got -1'),
])
def test_command_line_refuses_out_of_range_arguments(tmp_path, capsys, flags, message):
    clean = _clean_images(num=2, size=32)
    clean_dir = _write(str(tmp_path / 'clean'), clean, ['a', 'b'])
    real_dir = _write(str(tmp_path / 'real'), _add_noise(clean, SIGMA, 6), ['a', 'b'])
    code = main(['noise', '--clean', clean_dir, '--real', real_dir, '--generated', real_dir, '--out',
                 str(tmp_path / 'out')] + flags)
    err = capsys.readouterr().err
    assert code == 1 and message in err and 'Traceback' not in err
    assert not os.path.exists(tmp_path / 'out')  # refused before any work


def test_colour_shift_is_the_worst_channel_mean_of_one_image(tmp_path):
    clean = _clean_images(num=2, size=32)
    real = _add_noise(clean, SIGMA, 4)
    cast = [np.clip(x.astype(int) + np.array([0, 0, 3]), 0, 255).astype(np.uint8) for x in clean]  # +3 in red only
    cast[0] = clean[0].copy()
    report = evaluate_noise(clean, real, cast, str(tmp_path / 'r'), baselines=False, verbose=False,
                            fid_weights=str(tmp_path / 'none.pth'))
    expected = (cast[1].astype(float) - clean[1])[..., 2].mean()  # clipping at 255 can lower it below 3
    assert report['metrics']['generated']['colour_shift_8bit'] == pytest.approx(expected)
    assert 2.5 < expected <= 3
    assert report['real_colour_shift_8bit'] < 1.5  # zero-mean noise, up to clipping and sampling
    assert '| worst channel shift (8-bit) |' in (tmp_path / 'r' / 'report.md').read_text()

"""`basicsr demo --quick`: the main job runs end to end on embedded data and writes its report."""
import json
import os

import cv2
import numpy as np
import yaml

from helpers import run_basicsr
from senm_plugin.noise.levels import sample_sidd_levels, sample_sidd_shot_read


def test_sidd_prior_in_range():
    rng = np.random.default_rng(0)
    shot, read = sample_sidd_shot_read(10000, rng)
    assert shot.min() >= 0.00068674 and shot.max() <= 0.02194856
    # log10(read) - 1.85 log10(shot) - 0.30 ~ N(0, 0.2)
    resid = np.log10(read) - 1.85 * np.log10(shot) - 0.30
    assert abs(resid.mean()) < 0.01 and abs(resid.std() - 0.20) < 0.01
    assert np.all(sample_sidd_levels(5, rng) > 0)


def test_demo_quick_runs_the_whole_pipeline(tmp_path):
    proc = run_basicsr(['demo', '--quick', '--jobs', '2', '--out', str(tmp_path / 'demo')], cwd=str(tmp_path),
                       timeout=900)
    for k in range(1, 8):
        assert f'==> {k}/7' in proc.stdout
    out = tmp_path / 'demo'
    # the denoisers trained two at a time, each with its own log
    logs = sorted(p.name for p in (out / 'logs').iterdir())
    keys = ('pairs_only', 'gaussian_plus_pairs', 'synthetic_plus_pairs', 'true_noise_plus_pairs')
    assert logs == sorted(f'demo_scaoednet_{k}_seed0.log' for k in keys)
    assert all('End of training' in (out / 'logs' / name).read_text() for name in logs)
    summary = json.loads((out / 'summary.json').read_text())
    assert set(summary['noise']) == {'generated', 'gaussian', 'poisson_gaussian', 'gaussian_per_image'}
    assert all(np.isfinite(v['kld']) and v['kld'] >= 0 for v in summary['noise'].values())
    den = summary['denoise']
    assert 0 < den['noisy_psnr'] < 40
    for key in ('pairs_only', 'gaussian_plus_pairs', 'synthetic_plus_pairs', 'true_noise_plus_pairs'):
        assert np.isfinite(den[key]['psnr']), key
    # the yardstick's pairs: every clean-only crop with a capture of its own, never given to the noise model
    source = sorted(os.listdir(out / 'data' / 'source' / 'gt'))
    assert sorted(os.listdir(out / 'data' / 'source' / 'lq')) == source
    senm_data = yaml.safe_load((out / 'options' / 'demo_senm_seed0.yml').read_text())['datasets']['train']
    assert senm_data['dataroot_source'].endswith('source.lmdb') and 'source/lq' not in str(senm_data)
    assert len((out / 'lmdb' / 'source.lmdb' / 'meta_info.txt').read_text().splitlines()) == len(source)
    assert summary['real_noise_std_8bit'] > 1 and summary['noise']['generated']['noise_std_8bit'] >= 0
    assert summary['synthetic_pairs'] == summary['data']['source'] > 0
    text = (out / 'summary.md').read_text()
    assert '| noisy input |' in text and '| SeNM-VAE |' in text and '| real noise |' in text
    # the verdict says in words how the learned model fared against each baseline and for the denoiser
    verdict = text.split('## Verdict')[1].split('##')[0]
    assert 'Gaussian (fitted)' in verdict and 'Poisson-Gaussian (fitted)' in verdict
    assert 'Gaussian (per-image sigma)' in verdict
    assert 'synthetic pairs lifted the denoiser' in verdict or 'synthetic pairs did NOT lift' in verdict
    assert 'Yardstick: the same clean-only images with their true noise' in verdict
    assert '| ScaoedNet, true noise of the same clean-only images + real pairs (yardstick) |' in text
    assert len(list((out / 'gaussian' / 'lq').iterdir())) == summary['data']['source']
    for name in ('grid.png', 'histogram.png', 'noise_level.png', 'report.md', 'report.json'):
        assert (out / 'noise' / name).is_file(), name
    for name in ('paired_gt', 'paired_lq', 'source', 'target'):
        assert (out / 'lmdb' / f'{name}.lmdb' / 'meta_info.txt').is_file()
    pair = next((out / 'data' / 'paired' / 'gt').iterdir()).name
    gt = cv2.imread(str(out / 'data' / 'paired' / 'gt' / pair))
    lq = cv2.imread(str(out / 'data' / 'paired' / 'lq' / pair))
    assert gt.shape == lq.shape and 1.0 < np.abs(gt.astype(float) - lq).mean() < 40.0


def test_option_templates_come_from_the_repository_else_from_the_installed_package(tmp_path, monkeypatch):
    import importlib.util
    import os

    import pytest
    from senm_plugin.tools import demo_train
    from senm_plugin.tools.demo import SENM_TEMPLATE
    assert demo_train.template_path(SENM_TEMPLATE) == os.path.join(demo_train.REPO_OPTIONS, 'train', 'senm_cpu.yml')
    # as in a wheel install: no options/ beside the package
    monkeypatch.setattr(demo_train, 'REPO_OPTIONS', str(tmp_path))
    if importlib.util.find_spec('senm_plugin.options') is not None:  # installed from a wheel (setup.py package_dir)
        assert demo_train.template_path(SENM_TEMPLATE).endswith(
            os.path.join('senm_plugin', 'options', 'train', 'senm_cpu.yml'))
    else:
        with pytest.raises(FileNotFoundError, match='found neither in'):
            demo_train.template_path(SENM_TEMPLATE)


def test_parallel_training_runs_report_a_failed_run_with_its_log(tmp_path, monkeypatch):
    import pytest
    from senm_plugin.tools import demo_train
    monkeypatch.chdir(tmp_path)
    opts = [{'name': f'broken{k}', 'model_type': 'NoSuchModel', 'train': {}, 'logger': {}, 'val': {}} for k in (0, 1)]
    failed = r'basicsr train of broken\d failed \(exit \d+\); the end of .*broken\d\.log'
    with pytest.raises(RuntimeError, match=failed):
        demo_train.run_trains(opts, str(tmp_path), iters=5, seed=0, jobs=2)
    written = yaml.safe_load((tmp_path / 'options' / 'broken0.yml').read_text())
    assert written['train']['total_iter'] == 5 and written['manual_seed'] == 0

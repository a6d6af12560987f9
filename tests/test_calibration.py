"""Residual sampling of SeNMVAE.translate and the temperature fitted on real pairs (``--temperature auto``)."""
import json
import os

import numpy as np
import pytest
import torch

from helpers import TINY_LEVEL_OPT, TINY_SENMVAE_OPT, save_tiny_senmvae, write_pairs
from senm_plugin.archs.senmvae_arch import SeNMVAE
from senm_plugin.errors import GenerateError
from senm_plugin.noise.model import synthesize
from senm_plugin.tools.generate import run_generate
from senm_plugin.noise.calibration import TEMPERATURE_GRID, fit_temperature, noise_rms

pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_net(seed=0):
    torch.manual_seed(seed)
    net = SeNMVAE(**TINY_SENMVAE_OPT, zero_init_projections=False, winograd=False)
    with torch.no_grad():  # non-zero head outputs, so that zn has a spread and depends on the level
        for head in list(net.Gauconv_zn_p) + list(net.Gauconv_z_H):
            torch.nn.init.normal_(head.m[1].weight, 0, 0.1)
            torch.nn.init.normal_(head.v[1].weight, 0, 0.1)
    return net.eval()


def test_residual_translate_adds_only_rendered_noise():
    net = tiny_net()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        # at zero temperature every zn is 0 and so is its mean: 'mean' adds exactly nothing
        torch.testing.assert_close(net.translate(x, 0.05, temperature=0., residual='mean'), x, atol=1e-6, rtol=0)
        # 'clean' is the rendering with zn minus the one without, both from the mean of q(z|x)
        acts = net._encode(net.inconv_H, net.encs_H, x)
        torch.manual_seed(5)
        expected = x + net._render(acts, 0.05, 1., True, False, None) - net._render(acts, None, 0., True, True, None)
        torch.manual_seed(5)
        torch.testing.assert_close(net.translate(x, 0.05, residual='clean', channels_last=False), expected)
        # 'mean' is the sampled rendering minus the one at the prior mean, both from the mean of q(z|x)
        g = [torch.Generator().manual_seed(s) for s in (1, 2)]
        sampled = net._render(acts, 0.05, 1.5, True, False, [torch.Generator().manual_seed(s) for s in (1, 2)])
        at_mean = net._render(acts, 0.05, 1.5, True, True, None)
        torch.testing.assert_close(net.translate(x, 0.05, temperature=1.5, residual='mean', generators=g,
                                                 channels_last=False), x + sampled - at_mean)
        # and the plain translate is the paper's sampling: z and zn drawn, the decoding returned as it is
        torch.manual_seed(3)
        plain = net.translate(x, 0.05, channels_last=False)
        torch.manual_seed(3)
        torch.testing.assert_close(plain, net._render(acts, 0.05, 1.0, False, False, None))
    with pytest.raises(ValueError, match='residual must be'):
        net.translate(x, 0.05, residual='yes')


def test_level_residual_has_the_std_of_each_images_level():
    net = tiny_net()
    x = torch.rand(2, 3, 16, 16)
    levels = torch.tensor([0.02, 0.1])
    with torch.no_grad():
        g = [torch.Generator().manual_seed(s) for s in (1, 2)]
        mean = net.translate(x, levels, residual='mean', generators=g, channels_last=False)
        g = [torch.Generator().manual_seed(s) for s in (1, 2)]
        level = net.translate(x, levels, residual='level', generators=g, channels_last=False)
    for b in range(2):
        noise = (level - x)[b]
        assert noise.std().item() == pytest.approx(levels[b].item(), rel=1e-4)
        # the same noise as 'mean', only scaled: one positive factor for the whole image
        base = (mean - x)[b]
        torch.testing.assert_close(noise, base * (levels[b] / base.std()), atol=1e-5, rtol=1e-3)


def test_fit_temperature_finds_the_temperature_of_the_real_noise():
    net = tiny_net()
    rng = np.random.default_rng(0)
    clean = [rng.integers(40, 200, (24, 24, 3)).astype(np.uint8) for _ in range(3)]
    rms = [noise_rms(clean, synthesize(net, clean, [0.05] * 3, 0, t, residual='mean')) for t in (0.5, 1., 2.)]
    assert rms[0] < rms[1] < rms[2]  # stronger with the temperature
    # "real" noise: the model's own at temperature 1.5 (other draws); the fit must come back to about 1.5
    levels = [0.05] * 3
    real = synthesize(net, clean, levels, 7, 1.5, residual='mean')
    t, facts = fit_temperature(net, clean, real, residual='mean')
    assert facts['criterion'] == 'akld' and set(facts['akld']) == {float(v) for v in TEMPERATURE_GRID}
    assert facts['akld_at_fit'] == min(facts['akld'].values())
    assert 1.0 <= t <= 2.0, facts['akld']
    assert facts['target_std_8bit'] == pytest.approx(noise_rms(clean, real) * 255)
    with pytest.raises(ValueError, match='matching clean and noisy'):
        fit_temperature(net, clean, real[:2])


def test_generate_temperature_auto(tmp_path):
    model, _, _ = save_tiny_senmvae(str(tmp_path / 'models'))
    gt, lq = write_pairs(str(tmp_path / 'pairs'), num=3, size=16, sigma=10)
    cfg = {'model': model, 'input': gt, 'out': str(tmp_path / 'out'), 'network_g': json.dumps(TINY_SENMVAE_OPT),
           'network_le': TINY_LEVEL_OPT, 'format': 'png', 'device': 'cpu', 'levels': 'fixed:0.04',
           'residual': 'mean', 'temperature': 'auto'}
    with pytest.raises(GenerateError, match='--temperature auto needs --calibrate'):
        run_generate(cfg, progress=False)
    manifest = run_generate({**cfg, 'calibrate': [gt, lq]}, progress=False)
    fit = manifest['settings']['calibration']
    assert fit['pairs'] == 3 and fit['temperature'] == manifest['settings']['temperature'] > 0
    assert fit['akld'][fit['temperature']] == min(fit['akld'].values())
    assert fit['target_std_8bit'] == pytest.approx(10, abs=1.5)
    # the same command again finds its finished output (the fitted temperature is part of the settings)
    again = run_generate({**cfg, 'calibrate': [gt, lq]}, progress=False)
    assert again['fingerprint'] == manifest['fingerprint'] and len(os.listdir(tmp_path / 'out' / 'lq')) == 3
    with pytest.raises(GenerateError, match='--temperature must be auto or a finite number'):
        run_generate({**cfg, 'temperature': 'hot', 'out': str(tmp_path / 'o2')}, progress=False)
    with pytest.raises(GenerateError, match='--residual must be clean, mean or level'):
        run_generate({**cfg, 'residual': 'both', 'out': str(tmp_path / 'o3')}, progress=False)

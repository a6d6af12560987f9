"""Noise-quality metrics (KLD, AKLD, FID) and noise statistics against hand-computed values."""
import math

import numpy as np
import pytest
import torch

import senm_plugin  # noqa: F401  (registers metrics; must precede basicsr imports)
from basicsr.metrics import calculate_metric
from basicsr.utils.registry import METRIC_REGISTRY
from senm_plugin.metrics.fid import (FIDWeightsNotFoundError, calculate_fid_images, feature_statistics,
                                     find_inception_weights, frechet_distance, frechet_distance_from_features)
from senm_plugin.metrics.noise_metric import (akld_from_noise, calculate_noise_akld, calculate_noise_kld,
                                              gray_like_reference, local_noise_variance)
from senm_plugin.metrics.noise_stats import noise_histogram, noise_level_curve
from senm_plugin.noise.baselines import GaussianNoise, PoissonGaussianNoise, fit_gaussian, fit_poisson_gaussian

EPS = 1e-8  # reference compute_kl.py smoothing of the real histogram


def kl_by_hand(p, q, bins=256):
    """KL(p || q) of two dicts value -> probability, q smoothed as compute_kl.py does."""
    total = 1 + bins * EPS
    return sum(pv * math.log(pv / ((q.get(k, 0) + EPS) / total)) for k, pv in p.items())


# ---------------------------------------------------------------- KLD
def test_kld_two_values_hand_computed():
    gen = np.array([10] * 8 + [20] * 8, dtype=np.uint8).reshape(4, 4)
    real = np.array([10] * 12 + [20] * 4, dtype=np.uint8).reshape(4, 4)
    expected = kl_by_hand({10: 0.5, 20: 0.5}, {10: 0.75, 20: 0.25})
    assert calculate_noise_kld(gen, real) == pytest.approx(expected, rel=1e-12)
    # identical histograms: not exactly 0, the smoothing leaves about (bins - 2) * eps
    assert calculate_noise_kld(gen, gen) == pytest.approx(kl_by_hand({10: .5, 20: .5}, {10: .5, 20: .5}), rel=1e-9)
    assert 0 < calculate_noise_kld(gen, gen) < 3e-6
    # the order matters: KL(generated || real)
    assert calculate_noise_kld(real, gen) == pytest.approx(kl_by_hand({10: .75, 20: .25}, {10: .5, 20: .5}))


def test_kld_value_missing_from_real_uses_epsilon():
    gen = np.array([0] * 8 + [255] * 8, dtype=np.uint8).reshape(4, 4)
    real = np.zeros((4, 4), dtype=np.uint8)
    expected = kl_by_hand({0: 0.5, 255: 0.5}, {0: 1.0})
    assert calculate_noise_kld(gen, real) == pytest.approx(expected, rel=1e-12)
    assert expected > 8  # 0.5 * log(0.5 / 1e-8)


def test_kld_grey_colour_images_and_registry():
    grey = np.array([50] * 4 + [60] * 12, dtype=np.uint8).reshape(4, 4)
    real = np.array([50] * 8 + [60] * 8, dtype=np.uint8).reshape(4, 4)
    gen_bgr = np.repeat(grey[..., None], 3, axis=2)
    real_bgr = np.repeat(real[..., None], 3, axis=2)
    assert np.array_equal(gray_like_reference(gen_bgr), grey)
    expected = kl_by_hand({50: .25, 60: .75}, {50: .5, 60: .5})
    data = dict(img=gen_bgr, img2=real_bgr, img_clean=np.zeros_like(gen_bgr))
    assert calculate_metric(data, {'type': 'calculate_noise_kld'}) == pytest.approx(expected, rel=1e-12)
    assert METRIC_REGISTRY.get('calculate_noise_akld') is calculate_noise_akld


def test_gray_png_mode_differs_from_cvtcolor_like_libpng():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    png, cvt = gray_like_reference(img, 'png'), gray_like_reference(img, 'cvtcolor')
    assert png.shape == cvt.shape == (16, 16)
    assert np.abs(png.astype(int) - cvt).max() <= 1
    with pytest.raises(ValueError, match='gray_mode'):
        gray_like_reference(img, 'nope')


# ---------------------------------------------------------------- AKLD
def test_local_variance_of_a_single_spike():
    noise = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    noise[0, 0, 4, 4] = 0.5
    var = local_noise_variance(noise)
    k = np.array([1, 3.5, 7, 9, 7, 3.5, 1]) / 32  # cv2.getGaussianKernel(7, -1)
    assert var[0, 0, 4, 4].item() == pytest.approx(0.25 * k[3] * k[3], rel=1e-12)
    assert var[0, 0, 4, 5].item() == pytest.approx(0.25 * k[3] * k[2], rel=1e-12)
    assert var[0, 0, 1, 1].item() == pytest.approx(0.25 * k[0] * k[0], rel=1e-12)
    assert var[0, 0, 0, 0].item() == pytest.approx(1e-10)  # outside the window, clamped


def _pair(scale, seed=0, shape=(8, 8, 3)):
    rng = np.random.default_rng(seed)
    n = rng.integers(-10, 11, shape)
    n[n == 0] = 3  # no zero local variance anywhere
    clean = np.full(shape, 120, dtype=np.uint8)
    return (clean + scale * n).astype(np.uint8), (clean + n).astype(np.uint8), clean


def test_akld_identical_noise_is_zero():
    gen, real, clean = _pair(1)
    assert calculate_noise_akld(gen, real, clean) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize('scale, ratio', [(2, 4.0), (3, 9.0), (4, 10.0)])  # ratio 16 clamps at 10 (DANet)
def test_akld_scaled_noise_closed_form(scale, ratio):
    gen, real, clean = _pair(scale)
    expected = 0.5 * (ratio - 1 - math.log(ratio))
    assert calculate_noise_akld(gen, real, clean) == pytest.approx(expected, rel=1e-9)
    # KL(gen || real) is not symmetric: the real noise twice as strong gives r = 1/4
    if scale == 2:
        assert calculate_noise_akld(real, gen, clean) == pytest.approx(0.5 * (0.25 - 1 - math.log(0.25)))


def test_akld_batch_tensor_and_errors():
    noise = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = akld_from_noise(noise * torch.tensor([1.0, 2.0]).view(2, 1, 1, 1), noise)
    assert out.shape == (2, )
    assert out[0].item() == pytest.approx(0) and out[1].item() == pytest.approx(0.5 * (3 - math.log(4)))
    gen, real, clean = _pair(2)
    with pytest.raises(ValueError, match='img_clean'):
        calculate_noise_akld(gen, real, None)
    with pytest.raises(ValueError, match='larger than 3'):
        calculate_noise_akld(gen[:3, :3], real[:3, :3], clean[:3, :3])


# ---------------------------------------------------------------- noise statistics and baselines
def test_gaussian_fit_recovers_sigma():
    rng = np.random.default_rng(1)
    clean = rng.uniform(0.1, 0.9, (64, 64, 3))
    noisy = GaussianNoise(0.05).sample(clean, seed=2)
    model = fit_gaussian([clean[:32], clean[32:]], [noisy[:32], noisy[32:]])
    assert model.sigma == pytest.approx(0.05, rel=0.02)
    assert np.allclose(model.variance([0.2, 0.8]), model.sigma**2)
    clipped = model.sample(clean, seed=3, clip=(0, 1))
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_poisson_gaussian_fit_recovers_a_b_and_curve():
    a, b = 0.01, 0.02**2
    rng = np.random.default_rng(4)
    clean = rng.uniform(0.0, 1.0, (128, 128, 3))
    noisy = PoissonGaussianNoise(a, b).sample(clean, seed=5)
    centers, std, count = noise_level_curve(clean, noisy, num_bins=8)
    assert count.sum() == clean.size
    assert np.allclose(std, np.sqrt(a * centers + b), rtol=0.05)
    model = fit_poisson_gaussian(clean, noisy)
    assert model.a == pytest.approx(a, rel=0.05)
    assert model.b == pytest.approx(b, rel=0.15)
    # no negative parameters, even for pure Gaussian noise
    g = fit_poisson_gaussian(clean, GaussianNoise(0.03).sample(clean, seed=6))
    assert g.a >= 0 and g.b == pytest.approx(0.03**2, rel=0.1)
    with pytest.raises(ValueError, match='two intensity bins'):
        fit_poisson_gaussian(np.full((4, 4), 0.5), np.full((4, 4), 0.5))


def test_noise_histogram_density():
    density, edges = noise_histogram(np.array([-1.0, -1.0, 1.0, 0.0]), bins=4)
    assert edges[0] == -1 and edges[-1] == 1
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)
    assert density[0] == pytest.approx(0.5 / 0.5)  # half of the mass in a bin of width 0.5


# ---------------------------------------------------------------- FID
def test_frechet_distance_closed_forms():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 5.0 + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)
    # S2 = c S1 with S1 full: Tr(S1 + c S1 - 2 sqrt(c) S1) = Tr(S1) (1 - sqrt(c))^2
    rng = np.random.default_rng(0)
    r = rng.normal(size=(4, 4))
    full = r @ r.T + np.eye(4)
    assert frechet_distance(np.zeros(4), full, np.zeros(4), 4 * full) == pytest.approx(np.trace(full), rel=1e-9)


def test_frechet_from_features_matches_covariance_route():
    rng = np.random.default_rng(1)
    f1 = rng.normal(size=(12, 20)) @ rng.normal(size=(20, 20))
    f2 = rng.normal(0.5, 2.0, size=(9, 20))
    direct = frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    assert frechet_distance_from_features(f1, f2) == pytest.approx(direct, rel=1e-8)
    assert frechet_distance_from_features(f1, f1) == pytest.approx(0.0, abs=1e-8)
    big1, big2 = rng.normal(size=(30, 3)), rng.normal(1, 1, size=(40, 3))  # n > D route
    assert frechet_distance_from_features(big1, big2) == pytest.approx(
        frechet_distance(*feature_statistics(big1), *feature_statistics(big2)), rel=1e-8)


def test_fid_images_with_tiny_feature_extractor():
    rng = np.random.default_rng(2)
    set1 = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(5)]
    set2 = [np.clip(x.astype(int) + 40, 0, 255).astype(np.uint8) for x in set1]

    def channel_means(x):  # (N, 3, H, W) RGB in [0, 1] -> (N, 3)
        return x.mean(dim=(2, 3))

    fid = calculate_fid_images(set1, set2, feature_extractor=channel_means, batch_size=2)
    rgb = lambda s: np.stack([x[..., ::-1].reshape(-1, 3).mean(0) / 255. for x in s])  # noqa: E731
    assert fid == pytest.approx(frechet_distance(*feature_statistics(rgb(set1)), *feature_statistics(rgb(set2))))
    assert calculate_fid_images(set1, set1, feature_extractor=channel_means) == pytest.approx(0, abs=1e-10)


def test_fid_without_weights_raises_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FIDWeightsNotFoundError, match='pt_inception-2015-12-05-6726825d.pth') as err:
        calculate_fid_images([np.zeros((8, 8, 3), np.uint8)] * 2, [np.zeros((8, 8, 3), np.uint8)] * 2)
    assert str(tmp_path / 'torch_home') in str(err.value) and 'never downloaded' in str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(FIDWeightsNotFoundError, match='missing.pth'):
        find_inception_weights(str(tmp_path / 'missing.pth'))
    hub_file = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'pt_inception-2015-12-05-6726825d.pth'
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b'')
    assert find_inception_weights() == str(hub_file)

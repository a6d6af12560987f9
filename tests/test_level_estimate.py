"""The network-free noise-level estimate: unbiased on white noise, robust to image content, and once scaled on pairs
it follows noise stronger than any pair's (what the level network of a few pairs cannot)."""
import cv2
import numpy as np
import pytest

from senm_plugin.noise.level_estimate import fit_scale, highpass_sigma


def smooth_image(seed, size=96):
    """A smooth colour image with a few edges (content the estimator must ignore)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([80 + 60 * np.sin(3 * xx + c) * np.cos(2 * yy) for c in range(3)], -1)
    img[size // 3:, size // 2:] += 50  # a step edge
    return np.clip(img + rng.uniform(-2, 2, 3), 0, 255)


def noisy(img, sigma, seed, blur=0.0):
    noise = np.random.default_rng(seed).normal(0, 1, img.shape)
    if blur:  # spatially correlated noise, as demosaicing makes it; rescaled to std 1
        noise = cv2.GaussianBlur(noise, (0, 0), blur)
        noise /= noise.std()
    return np.clip(np.round(img + sigma * noise), 0, 255).astype(np.uint8)


def test_white_noise_std_is_recovered_unpooled_and_halved_by_2x2_pooling():
    img = smooth_image(0, 192)
    for sigma in (5.0, 15.0):
        y = noisy(img, sigma, 1)
        assert highpass_sigma(y, pool=1) == pytest.approx(sigma, rel=0.08)
        assert highpass_sigma(y, pool=2) == pytest.approx(sigma / 2, rel=0.1)  # the mean of 4 white samples
    assert highpass_sigma(np.round(img).astype(np.uint8), pool=1) < 1.0  # content alone reads as almost no noise
    with pytest.raises(ValueError, match='too small'):
        highpass_sigma(np.zeros((4, 40, 3), np.uint8))


@pytest.mark.parametrize('blur', [0.0, 1.0])
def test_scaled_on_weak_pairs_it_follows_stronger_noise(blur):
    clean = [np.round(smooth_image(s)).astype(np.uint8) for s in range(4)]
    pairs = [noisy(x, 5.0, 10 + k, blur) for k, x in enumerate(clean)]
    scale = fit_scale(clean, pairs)
    if blur:
        assert scale > 2.5  # correlated noise hides from a high-pass filter: the scale makes up for it
    else:
        assert scale == pytest.approx(2.0, rel=0.1)
    strong = [noisy(x, 12.0, 20 + k, blur) for k, x in enumerate(clean)]
    estimates = [scale * highpass_sigma(y) for y in strong]
    truth = [(y.astype(float) - x).std() for x, y in zip(clean, strong)]
    np.testing.assert_allclose(estimates, truth, rtol=0.12)
    with pytest.raises(ValueError, match='no pair with measurable noise'):
        fit_scale(clean, clean)

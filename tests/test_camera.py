"""The simulated sRGB camera: shapes and ranges, determinism, and noise that is signal dependent and correlated."""
import numpy as np
import pytest

from senm_plugin.noise.camera import Camera, capture_noisy, demosaic, mosaic, render_clean, unprocess


def flat(value, size=96):
    return np.full((size, size, 3), value, np.uint8)


def noise_of(img, camera, seed):
    return capture_noisy(img, camera, np.random.default_rng(seed)).astype(np.float64) - render_clean(img, camera)


def test_shapes_ranges_and_determinism():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (34, 50, 3), dtype=np.uint8)
    cam = Camera()
    clean, noisy = render_clean(img, cam), capture_noisy(img, cam, np.random.default_rng(3))
    assert clean.shape == noisy.shape == img.shape and clean.dtype == noisy.dtype == np.uint8
    assert np.array_equal(noisy, capture_noisy(img, cam, np.random.default_rng(3)))
    assert not np.array_equal(noisy, capture_noisy(img, cam, np.random.default_rng(4)))
    assert np.array_equal(render_clean(img, cam), clean)
    # without noise the pipeline is the identity on a flat image (unprocess and process invert each other)
    assert np.abs(render_clean(flat(120, 16), cam).astype(int) - 120).max() <= 1
    assert np.array_equal(capture_noisy(img, Camera(shot=0, read=0), rng), clean)
    jpeg = capture_noisy(img, Camera(jpeg_quality=80), np.random.default_rng(3))
    assert jpeg.shape == img.shape and jpeg.dtype == np.uint8


def test_mosaic_and_demosaic_invert_on_a_constant_colour():
    cam_rgb = np.broadcast_to(np.array([0.2, 0.5, 0.7]), (8, 10, 3))
    raw = mosaic(cam_rgb)
    assert raw[0, 0] == 0.2 and raw[0, 1] == raw[1, 0] == 0.5 and raw[1, 1] == 0.7
    np.testing.assert_allclose(demosaic(raw), cam_rgb, atol=1e-12)
    assert unprocess(flat(255, 4), Camera()).max() <= 1.0


def test_noise_is_signal_dependent_and_correlated():
    cam = Camera()
    noise = noise_of(flat(120), cam, 1)
    # neighbouring pixels share the raw samples that demosaicing interpolates from
    for c in range(3):
        horizontal = np.corrcoef(noise[:, :-1, c].ravel(), noise[:, 1:, c].ravel())[0, 1]
        assert horizontal > 0.2, (c, horizontal)
    # the colour matrix mixes the raw noise of the channels
    channel = np.corrcoef(noise[..., 0].ravel(), noise[..., 1].ravel())[0, 1]
    assert abs(channel) > 0.2
    # a pixel-independent Gaussian of the same std has none of that
    white = np.random.default_rng(0).normal(0, noise.std(), noise.shape)
    assert abs(np.corrcoef(white[:, :-1, 0].ravel(), white[:, 1:, 0].ravel())[0, 1]) < 0.05
    # raw noise grows with the signal: in linear light the noise of a bright patch is larger than a dark one's
    lin = {
        v: ((capture_noisy(flat(v), cam, np.random.default_rng(2)) / 255.)**cam.gamma -
            (render_clean(flat(v), cam) / 255.)**cam.gamma).std()
        for v in (60, 200)
    }
    assert lin[200] > 1.5 * lin[60]


def test_camera_checks_its_parameters():
    with pytest.raises(ValueError, match='shot and read'):
        Camera(shot=-1)
    with pytest.raises(ValueError, match='jpeg_quality'):
        Camera(jpeg_quality=101)


def test_a_higher_gain_scales_the_raw_variances_and_the_noise():
    cam = Camera(shot=0.004, read=1e-4)
    high = cam.at_gain(4.0)
    assert high.shot == pytest.approx(0.016) and high.read == pytest.approx(1.6e-3) and high.ccm == cam.ccm
    # the read-noise-only part quadruples its std at gain 4 (variance x 16); noise of a mid-grey patch grows
    assert noise_of(flat(120), high, 5).std() > 1.8 * noise_of(flat(120), cam, 5).std()
    with pytest.raises(ValueError, match='gain must be > 0'):
        cam.at_gain(0)

"""A simulated sRGB camera: noise as it arises in a real image pipeline, for the demo and for tests.

A clean sRGB image is unprocessed to a raw Bayer mosaic (inverse tone curve, inverse colour matrix, inverse white
balance, RGGB sampling), raw Poisson-Gaussian noise is added per photosite (variance ``shot * x + read``), and the
mosaic is processed back: bilinear demosaicing, white balance, colour matrix, tone curve, 8-bit quantisation and
optionally JPEG. The resulting sRGB noise is signal dependent, correlated between neighbouring pixels (demosaicing
interpolates each colour from its neighbours) and between channels (the colour matrix mixes them), so unlike the
per-pixel Gaussian and Poisson-Gaussian baselines no single-pixel model fits it exactly. The pipeline follows the
unprocessing model of Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019), simplified.
"""
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

# An sRGB-like camera colour matrix (camera RGB -> linear sRGB); each row sums to 1 so grey stays grey. Its
# negative off-diagonal terms amplify and anti-correlate the raw noise of the three channels, as real ones do.
DEFAULT_CCM = ((1.80, -0.60, -0.20), (-0.25, 1.55, -0.30), (0.05, -0.55, 1.50))


@dataclass(frozen=True)
class Camera:
    """Parameters of the simulated camera (raw intensities in [0, 1])."""
    shot: float = 0.01  # raw noise variance per unit of signal (Poisson part)
    read: float = 2e-4  # raw noise variance at zero signal (Gaussian part)
    wb_gains: tuple = (2.0, 1.0, 1.6)  # white-balance gains of R, G, B
    ccm: tuple = field(default=DEFAULT_CCM)
    gamma: float = 2.2  # tone curve x ** (1 / gamma)
    jpeg_quality: int = 0  # 0: no JPEG; otherwise the JPEG quality of the output

    def __post_init__(self):
        if self.shot < 0 or self.read < 0:
            raise ValueError(f'Camera: shot and read must be >= 0, got {self.shot}, {self.read}')
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f'Camera: jpeg_quality must be in [0, 100], got {self.jpeg_quality}')

    def at_gain(self, gain):
        """The same camera at ``gain`` times its ISO: the signal is amplified by ``gain``, so in units of the output
        the Poisson variance grows with ``gain`` and the read-noise variance with ``gain`` squared."""
        if not gain > 0:
            raise ValueError(f'Camera.at_gain: gain must be > 0, got {gain}')
        return replace(self, shot=self.shot * gain, read=self.read * gain * gain)


def unprocess(img_bgr, camera):
    """An 8-bit sRGB image (BGR, OpenCV order) -> linear camera RGB in [0, 1] before white balance, (H, W, 3)."""
    rgb = img_bgr[..., ::-1].astype(np.float64) / 255.0
    linear = rgb**camera.gamma
    cam = linear @ np.linalg.inv(np.asarray(camera.ccm)).T
    return np.clip(cam / np.asarray(camera.wb_gains), 0.0, 1.0)


def mosaic(cam_rgb):
    """RGGB Bayer mosaic (H, W) of a camera RGB image: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)."""
    raw = np.empty(cam_rgb.shape[:2])
    raw[0::2, 0::2] = cam_rgb[0::2, 0::2, 0]
    raw[0::2, 1::2] = cam_rgb[0::2, 1::2, 1]
    raw[1::2, 0::2] = cam_rgb[1::2, 0::2, 1]
    raw[1::2, 1::2] = cam_rgb[1::2, 1::2, 2]
    return raw


def demosaic(raw):
    """Bilinear demosaicing of an RGGB mosaic: each missing colour is the mean of its nearest samples, (H, W, 3)."""
    h, w = raw.shape
    masks = np.zeros((3, h, w))
    masks[0, 0::2, 0::2] = 1
    masks[1, 0::2, 1::2] = masks[1, 1::2, 0::2] = 1
    masks[2, 1::2, 1::2] = 1
    kernel_rb = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    kernel_g = np.array([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]])
    out = np.empty((h, w, 3))
    for c, kernel in enumerate((kernel_rb, kernel_g, kernel_rb)):
        # normalised convolution: the weights of the samples present, so borders need no special case
        num = cv2.filter2D(raw * masks[c], -1, kernel, borderType=cv2.BORDER_REFLECT)
        den = cv2.filter2D(masks[c], -1, kernel, borderType=cv2.BORDER_REFLECT)
        out[..., c] = num / den
    return out


def process(raw, camera):
    """A raw RGGB mosaic -> 8-bit sRGB (BGR): demosaic, white balance, colour matrix, tone curve, quantisation."""
    cam = demosaic(raw) * np.asarray(camera.wb_gains)
    linear = np.clip(cam @ np.asarray(camera.ccm).T, 0.0, 1.0)
    srgb = linear**(1.0 / camera.gamma)
    out = np.clip(np.round(srgb * 255.0), 0, 255).astype(np.uint8)[..., ::-1]
    if camera.jpeg_quality:
        ok, buf = cv2.imencode('.jpg', out, [cv2.IMWRITE_JPEG_QUALITY, int(camera.jpeg_quality)])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(out)


def render_clean(img_bgr, camera):
    """The camera's clean image of the scene: the same pipeline without noise (what a noisy capture is paired with).

    Demosaicing blurs fine detail a little, so the clean side of a pair goes through the pipeline too; otherwise the
    noisy-minus-clean difference would hold demosaicing error as well as noise.
    """
    return process(mosaic(unprocess(img_bgr, camera)), camera)


def capture_noisy(img_bgr, camera, rng):
    """A noisy capture of the scene ``img_bgr`` (8-bit BGR) by ``camera`` with draws from ``rng``."""
    raw = mosaic(unprocess(img_bgr, camera))
    noisy = raw + np.sqrt(camera.shot * raw + camera.read) * rng.standard_normal(raw.shape)
    return process(np.clip(noisy, 0.0, 1.0), camera)

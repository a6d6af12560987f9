"""Noise level of a noisy image without a network: a robust high-pass estimate, scaled to std(y - x) on real pairs.

SeNM-VAE's noise-level network (paper Sec. 3.2) learns levels from the paired domain only, so a handful of pairs
teaches it the range of levels those pairs span and nothing beyond: on the CC set, trained on pairs of std 4.4-5.4
(8-bit), it rates ISO 6400 images of std 8.3 at 4.1 (benchmarks/RESULTS.md). This estimator needs no training. It
takes the median absolute response of Immerkaer's Laplacian-difference mask (J. Immerkaer, "Fast Noise Variance
Estimation", CVIU 1996), which cancels locally planar image content, as a robust std (median / 0.6745, as for a
Gaussian), on the image averaged over 2x2 blocks. Real sRGB noise is correlated between neighbouring pixels
(demosaicing, denoising in the camera), so a high-pass filter sees only part of it; the part it sees is a fixed
share for one camera pipeline, and ``fit_scale`` measures that share on the real pairs. The scaled estimate then
follows the level to noise stronger than any pair's.
"""
import cv2
import numpy as np

# Immerkaer's mask, normalised to unit L2 norm: white noise of std s gives a response of std s
MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6.0
POOL = 2  # average 2x2 blocks first: correlated noise keeps more of its energy at that scale
MAD_TO_STD = 0.6745  # median |x| of a standard normal


def highpass_sigma(img, pool=POOL):
    """Robust high-pass noise std of a uint8 image (H, W, C), averaged over channels, in 8-bit units (unscaled)."""
    x = img.astype(np.float32)
    if x.ndim == 2:
        x = x[..., None]
    if pool > 1:
        h, w = x.shape[0] // pool * pool, x.shape[1] // pool * pool
        if h < 3 * pool or w < 3 * pool:
            raise ValueError(f'image of {img.shape[0]}x{img.shape[1]} is too small for a noise estimate')
        x = x[:h, :w].reshape(h // pool, pool, w // pool, pool, -1).mean((1, 3))
    sigmas = []
    for c in range(x.shape[2]):
        response = cv2.filter2D(np.ascontiguousarray(x[..., c]), -1, MASK, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
        sigmas.append(np.median(np.abs(response)) / MAD_TO_STD)
    return float(np.mean(sigmas))


def fit_scale(clean_imgs, noisy_imgs, pool=POOL):
    """The factor that turns ``highpass_sigma`` of a noisy image into its noise std: the median over the real pairs
    of std(y - x) / highpass_sigma(y)."""
    ratios = []
    for x, y in zip(clean_imgs, noisy_imgs):
        est, std = highpass_sigma(y, pool), (y.astype(np.float64) - x).std()
        if est > 0 and std > 0:
            ratios.append(std / est)
    if not ratios:
        raise ValueError('no pair with measurable noise to fit the level scale on')
    return float(np.median(ratios))

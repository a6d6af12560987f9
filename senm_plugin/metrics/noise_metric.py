"""Noise-quality metrics registered in BasicSR's METRIC_REGISTRY: KLD (SeNM-VAE) and AKLD (DANet).

Both follow BasicSR's metric calling convention, ``calculate_metric(data, opt)`` ->
``METRIC_REGISTRY.get(type)(**data, **opt)``, with ``img`` the generated noisy image, ``img2`` the real noisy
image and ``img_clean`` the clean image, each a uint8 HWC BGR array as ``basicsr.utils.tensor2img`` returns.
One call scores one image; the caller averages over images, as both reference protocols do.
"""
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from basicsr.metrics.metric_util import reorder_image
from basicsr.utils.registry import METRIC_REGISTRY

# SeNM-VAE reference `SIDD/compute_kl.py`: 256-bin histogram over (0, 255), 1e-8 added to the real image's
# probabilities (then renormalised) before KL(generated || real), natural logarithm (scipy.stats.entropy).
KLD_BINS = 256
KLD_RANGE = (0, 255)
KLD_EPS = 1e-8

# DANet (Yue et al., ECCV 2020), `utils.py` of zsyOAOA/DANet: local variances are the squared noise filtered
# per channel with a 7x7 kernel from cv2.getGaussianKernel(7, sigma=-1) (OpenCV's fixed table
# [1, 3.5, 7, 9, 7, 3.5, 1] / 32 for ksize 7, close to a Gaussian of sigma 1.4), reflect padding, images in
# [0, 1], variances clamped below at 1e-10 and the ratio generated / real clamped to [0.1, 10].
AKLD_WIN = 7
AKLD_KERNEL_SIGMA = -1
AKLD_VAR_MIN = 1e-10
AKLD_RATIO_RANGE = (0.1, 10.0)


def _to_hwc(img, input_order):
    img = np.asarray(img)
    if img.ndim == 2:
        return img[..., None]
    return reorder_image(img, input_order=input_order)


def _to_uint8(img):
    if img.dtype == np.uint8:
        return img
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def gray_like_reference(img, gray_mode='png', input_order='HWC'):
    """Grey version of a uint8 BGR image, as the reference obtains it (``cv2.imread(png, 0)``).

    ``gray_mode='png'`` encodes the image to PNG in memory and decodes it with ``IMREAD_GRAYSCALE``: libpng's
    RGB-to-grey conversion differs from ``cv2.cvtColor`` by one grey level on about half of the pixels, and this
    is what the reference's KLD sees when it reads generated PNG files. ``gray_mode='cvtcolor'`` uses
    ``cv2.cvtColor(BGR2GRAY)``. One-channel input is returned unchanged.
    """
    img = _to_uint8(_to_hwc(img, input_order))
    if img.shape[2] == 1:
        return img[..., 0]
    if img.shape[2] != 3:
        raise ValueError(f'Expected a 1- or 3-channel image, got shape {img.shape}')
    if gray_mode == 'png':
        ok, buf = cv2.imencode('.png', np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 0])
        if not ok:
            raise RuntimeError(f'cv2.imencode failed on an image of shape {img.shape}')
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if gray_mode == 'cvtcolor':
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    raise ValueError(f'Unknown gray_mode {gray_mode!r}; use "png" or "cvtcolor"')


def histogram_kl(values_gen, values_real, bins=KLD_BINS, value_range=KLD_RANGE, eps=KLD_EPS):
    """KL(P_gen || P_real) between the normalised histograms of two arrays, with ``eps`` smoothing P_real."""
    hist_gen, _ = np.histogram(np.asarray(values_gen).ravel(), bins=bins, range=value_range)
    hist_real, _ = np.histogram(np.asarray(values_real).ravel(), bins=bins, range=value_range)
    p = hist_gen / hist_gen.sum()
    q = hist_real / hist_real.sum() + eps
    q = q / q.sum()
    nz = p > 0  # 0 * log 0 = 0
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


@METRIC_REGISTRY.register()
def calculate_noise_kld(img,
                        img2,
                        img_clean=None,
                        bins=KLD_BINS,
                        gray_mode='png',
                        use_gray=True,
                        input_order='HWC',
                        **kwargs):
    """KLD of the SeNM-VAE paper: KL between the grey-level histograms of the generated and real noisy images.

    Args:
        img (ndarray): generated noisy image, uint8, [0, 255], BGR.
        img2 (ndarray): real noisy image, uint8, [0, 255], BGR.
        img_clean: not used (accepted so one data dict serves all noise metrics).
        bins (int): number of histogram bins over (0, 255). Default: 256 (reference).
        gray_mode (str): 'png' (exactly as the reference reads PNG files) or 'cvtcolor'. Default: 'png'.
        use_gray (bool): histograms of the grey images as the reference; False pools all colour channels.

    Returns:
        float: KL(P_generated || P_real), as ``compute_kl(img_G, img_R)`` in the reference.
    """
    if use_gray:
        gen, real = gray_like_reference(img, gray_mode, input_order), gray_like_reference(img2, gray_mode, input_order)
    else:
        gen, real = _to_hwc(img, input_order), _to_hwc(img2, input_order)
    return histogram_kl(gen, real, bins=bins, value_range=KLD_RANGE, eps=KLD_EPS)


def _local_variance_kernel(win_size, kernel_sigma, channels, device, dtype):
    k1d = cv2.getGaussianKernel(win_size, kernel_sigma)
    k2d = torch.from_numpy(k1d @ k1d.T).to(device=device, dtype=dtype)
    return k2d.expand(channels, 1, win_size, win_size).contiguous()


def local_noise_variance(noise, win_size=AKLD_WIN, kernel_sigma=AKLD_KERNEL_SIGMA, var_min=AKLD_VAR_MIN):
    """Per-pixel, per-channel variance of zero-mean noise: Gaussian-filtered squared noise (DANet's estimate).

    Args:
        noise (Tensor): (N, C, H, W), in [0, 1] image units; H and W must exceed ``win_size // 2``.

    Returns:
        Tensor: (N, C, H, W) variances, clamped below at ``var_min``.
    """
    pad = win_size // 2
    if min(noise.shape[-2:]) <= pad:
        raise ValueError(f'AKLD needs images larger than {pad} pixels per side, got {tuple(noise.shape[-2:])}')
    channels = noise.shape[1]
    kernel = _local_variance_kernel(win_size, kernel_sigma, channels, noise.device, noise.dtype)
    padded = F.pad(noise**2, [pad] * 4, mode='reflect')
    return F.conv2d(padded, kernel, groups=channels).clamp_(min=var_min)


def akld_from_noise(noise_gen,
                    noise_real,
                    win_size=AKLD_WIN,
                    kernel_sigma=AKLD_KERNEL_SIGMA,
                    ratio_range=AKLD_RATIO_RANGE):
    """AKLD per image between generated and real noise tensors (N, C, H, W) in [0, 1] units.

    KL(N(0, v_gen) || N(0, v_real)) = 0.5 * (r - 1 - log r) with r = v_gen / v_real, averaged over channels and
    pixels. Returns a tensor of shape (N,).
    """
    if noise_gen.shape != noise_real.shape:
        raise ValueError(f'Noise shapes differ: {tuple(noise_gen.shape)} vs {tuple(noise_real.shape)}')
    var_gen = local_noise_variance(noise_gen, win_size, kernel_sigma)
    var_real = local_noise_variance(noise_real, win_size, kernel_sigma)
    ratio = (var_gen / var_real).clamp_(*ratio_range)
    return 0.5 * (ratio - 1 - torch.log(ratio)).mean(dim=(1, 2, 3))


def _uint8_to_tensor(img, input_order):
    img = _to_hwc(img, input_order).astype(np.float64) / 255.
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


@METRIC_REGISTRY.register()
def calculate_noise_akld(img,
                         img2,
                         img_clean,
                         win_size=AKLD_WIN,
                         kernel_sigma=AKLD_KERNEL_SIGMA,
                         input_order='HWC',
                         **kwargs):
    """AKLD of DANet: mean KL between local zero-mean Gaussian fits of generated and real noise.

    Args:
        img (ndarray): generated noisy image, uint8 [0, 255] (noise = img - img_clean).
        img2 (ndarray): real noisy image, uint8 [0, 255] (noise = img2 - img_clean).
        img_clean (ndarray): clean image, uint8 [0, 255].
        win_size (int): filter window. Default: 7 (DANet).
        kernel_sigma (float): Gaussian sigma of the window; -1 is OpenCV's default for the window, as DANet.

    Returns:
        float: AKLD of this image.
    """
    if img_clean is None:
        raise ValueError('calculate_noise_akld needs img_clean: the noise is the noisy image minus the clean one')
    gen, real, clean = (_uint8_to_tensor(x, input_order) for x in (img, img2, img_clean))
    if not gen.shape == real.shape == clean.shape:
        raise ValueError(f'Image shapes differ: generated {tuple(gen.shape)}, real {tuple(real.shape)}, '
                         f'clean {tuple(clean.shape)}')
    return float(akld_from_noise(gen - clean, real - clean, win_size, kernel_sigma)[0])

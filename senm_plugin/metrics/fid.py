"""FID between two sets of images with BasicSR's FID Inception network, from local weights only.

BasicSR's ``fid_inception_v3`` reads ``experiments/pretrained_models/pt_inception-...pth`` relative to the
working directory and otherwise calls ``load_url``, which downloads. Here the weights file is found first
(explicit path, BasicSR's relative path, torch's hub cache) and the network is built with BasicSR's loader
pointed at it; without a file, ``FIDWeightsNotFoundError`` is raised for the caller to report.
"""
import os
import warnings
from unittest import mock

import numpy as np
import torch

FID_WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
FID_WEIGHTS_URL = f'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}'


class FIDWeightsNotFoundError(FileNotFoundError):
    """The FID Inception weights are not on this machine; FID cannot be computed (nothing is downloaded)."""


def inception_weight_candidates(weights_path=None):
    """Files searched for the FID Inception weights, in order."""
    if weights_path:
        return [os.path.expanduser(weights_path)]
    return [
        os.path.join('experiments', 'pretrained_models', FID_WEIGHTS_FILE),  # BasicSR's LOCAL_FID_WEIGHTS
        os.path.join(torch.hub.get_dir(), 'checkpoints', FID_WEIGHTS_FILE),  # where load_url would cache it
    ]


def find_inception_weights(weights_path=None):
    """Path of the local FID Inception weights, or ``FIDWeightsNotFoundError`` naming where to put them."""
    candidates = inception_weight_candidates(weights_path)
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise FIDWeightsNotFoundError(
        f'FID needs the Inception weights {FID_WEIGHTS_FILE} ({FID_WEIGHTS_URL}), which are never downloaded '
        f'here; looked in: {", ".join(os.path.abspath(p) for p in candidates)}. Copy the file to one of these '
        f'places or pass its path (fid weights option).')


def _no_download(url, *args, **kwargs):
    raise FIDWeightsNotFoundError(f'Refusing to download {url}')


def load_inception(weights_path=None, device='cpu'):
    """BasicSR's FID InceptionV3 (2048-d pool features, input resized to 299) with local weights, in eval mode."""
    path = find_inception_weights(weights_path)
    from basicsr.archs import inception as basicsr_inception

    with mock.patch.object(basicsr_inception, 'LOCAL_FID_WEIGHTS', path), \
            mock.patch.object(basicsr_inception, 'load_url', _no_download), warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # torchvision's deprecated `pretrained=` argument
        net = basicsr_inception.InceptionV3([3], resize_input=True, normalize_input=True)
    return InceptionFeatures(net).to(device).eval()


class InceptionFeatures(torch.nn.Module):
    """Wraps BasicSR's InceptionV3 so it maps (N, 3, H, W) RGB in [0, 1] to (N, 2048) features."""

    def __init__(self, inception):
        super().__init__()
        self.inception = inception

    def forward(self, x):
        """Pool-3 features of RGB images in [0, 1]."""
        return self.inception(x)[0].flatten(1)


def images_to_tensor(images, bgr=True):
    """Stack uint8 HWC images (BGR as BasicSR keeps them) into an (N, 3, H, W) RGB float tensor in [0, 1]."""
    arrs = []
    for img in images:
        img = np.asarray(img)
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        elif bgr:
            img = img[..., ::-1]
        arrs.append(np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32) / 255.)
    return torch.from_numpy(np.stack(arrs))


@torch.no_grad()
def extract_features(images, feature_extractor, batch_size=8, device='cpu', bgr=True):
    """Features (N, D) as float64 NumPy of uint8 HWC images (list of arrays, equal sizes within a batch)."""
    feats = []
    for start in range(0, len(images), batch_size):
        batch = images_to_tensor(images[start:start + batch_size], bgr=bgr).to(device)
        feats.append(feature_extractor(batch).reshape(batch.shape[0], -1).double().cpu())
    return torch.cat(feats).numpy()


def feature_statistics(features):
    """Mean and covariance (rows are samples) of a feature matrix."""
    features = np.asarray(features, dtype=np.float64)
    if features.shape[0] < 2:
        raise ValueError(f'FID needs at least two images per set, got {features.shape[0]}')
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """Frechet distance ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (BasicSR's ``calculate_fid``)."""
    from basicsr.metrics.fid import calculate_fid

    return float(
        calculate_fid(np.atleast_1d(mu1), np.atleast_2d(sigma1), np.atleast_1d(mu2), np.atleast_2d(sigma2), eps=eps))


def frechet_distance_from_features(features1, features2):
    """Frechet distance between the Gaussians fitted to two feature matrices (rows are samples).

    Same value as ``frechet_distance`` on their statistics, without a D x D matrix square root: with centred
    features A1, A2 and c = (n1 - 1)(n2 - 1), the eigenvalues of S1 S2 are those of M M^T / c with
    M = A1 A2^T, so Tr (S1 S2)^(1/2) is the sum of M's singular values over sqrt(c). For a few hundred images
    and D = 2048 this takes milliseconds instead of the minutes ``scipy.linalg.sqrtm`` needs on a small CPU.
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f'Feature matrices must be (N, D) with the same D, got {f1.shape} and {f2.shape}')
    n1, n2 = f1.shape[0], f2.shape[0]
    if min(n1, n2) < 2:
        raise ValueError(f'FID needs at least two images per set, got {n1} and {n2}')
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a1, a2 = f1 - mu1, f2 - mu2
    if max(n1, n2) > f1.shape[1]:  # more samples than dimensions: the D x D route is the cheaper one
        return frechet_distance(mu1, np.cov(f1, rowvar=False), mu2, np.cov(f2, rowvar=False))
    trace_sqrt = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    trace1 = (a1**2).sum() / (n1 - 1)
    trace2 = (a2**2).sum() / (n2 - 1)
    return float(((mu1 - mu2)**2).sum() + trace1 + trace2 - 2 * trace_sqrt)


def calculate_fid_images(images1,
                         images2,
                         weights_path=None,
                         feature_extractor=None,
                         batch_size=8,
                         device='cpu',
                         bgr=True):
    """FID between two lists of uint8 HWC images.

    Args:
        images1, images2 (list[ndarray]): the two sets (e.g. generated and real noisy images).
        weights_path (str | None): local FID Inception weights; default search in ``inception_weight_candidates``.
        feature_extractor (callable | None): maps (N, 3, H, W) RGB [0, 1] to (N, D); default: FID Inception.

    Raises:
        FIDWeightsNotFoundError: without a feature extractor and without local Inception weights.
    """
    if feature_extractor is None:
        feature_extractor = load_inception(weights_path, device)
    features1 = extract_features(images1, feature_extractor, batch_size, device, bgr)
    features2 = extract_features(images2, feature_extractor, batch_size, device, bgr)
    return frechet_distance_from_features(features1, features2)

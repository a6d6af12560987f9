"""The demo's data: crops of images that ship with scikit-image (no download), rendered by a simulated sRGB camera
(``noise.camera``) into clean/noisy pairs, clean-only and noisy-only crops, and held-out test pairs."""
import os

import cv2
import numpy as np

from senm_plugin.noise.camera import Camera, capture_noisy, render_clean

# colour images inside scikit-image's package folder (no download); the test images are held out
TRAIN_IMAGES = ('astronaut.png', 'chelsea.png', 'coffee.png', 'motorcycle_left.png', 'hubble_deep_field.jpg',
                'retina.jpg')
TEST_IMAGES = ('rocket.jpg', 'ihc.png')
# the demo camera: raw noise about as strong as a SIDD phone's at a high ISO (noisy crops ~24 dB PSNR)
DEMO_CAMERA = Camera(shot=0.003, read=1e-4)
# each noisy capture is taken at a gain drawn log-uniformly from this range, as a user's photos span ISO settings
# (two ISO stops; benchmarks/RESULTS.md has the demo at one fixed gain too); (1, 1): every capture at DEMO_CAMERA's
DEMO_GAINS = (0.25, 1.0)


def _read_sample(name):
    """A scikit-image sample image as uint8 BGR (OpenCV order, as BasicSR reads files)."""
    import skimage
    path = os.path.join(os.path.dirname(skimage.__file__), 'data', name)
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'scikit-image sample image missing: {path}; reinstall scikit-image')
    return img


def _random_crops(img, size, num, rng):
    """``num`` random ``size`` crops of ``img``."""
    h, w = img.shape[:2]
    for _ in range(num):
        top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        yield img[top:top + size, left:left + size]


def make_demo_data(root, crop=96, crops_per_image=12, num_paired=6, test_crop=128, seed=0, gains=None):
    """Write the demo's camera-noise data as PNG folders under ``root``; returns ({name: folder}, facts).

    Crops of the training images are split into ``num_paired`` pairs, then halves of clean-only (source) and
    noisy-only (target) crops; the held-out images give the test pairs. One simulated sRGB camera
    (``DEMO_CAMERA``) renders every image: clean ones without noise, noisy ones with raw noise at a gain drawn from
    ``gains`` (default DEMO_GAINS). ``source/lq`` holds a capture of each clean-only crop with the camera's own noise
    (its own random stream, so the other images do not change): never a training input of the noise model, only the
    yardstick of a denoiser trained on the true noise.
    """
    rng = np.random.default_rng(seed)
    low, high = gains or DEMO_GAINS

    def noisy(img, r=rng):
        gain = low if high == low else float(np.exp(r.uniform(np.log(low), np.log(high))))
        return capture_noisy(img, DEMO_CAMERA.at_gain(gain), r)

    crops = [c for name in TRAIN_IMAGES for c in _random_crops(_read_sample(name), crop, crops_per_image, rng)]
    order = rng.permutation(len(crops))
    paired, rest = order[:num_paired], order[num_paired:]
    source, target = rest[:len(rest) // 2], rest[len(rest) // 2:]
    folders = {}

    def write(domain, kind, index, img):
        folder = os.path.join(root, domain, kind)
        os.makedirs(folder, exist_ok=True)
        folders[f'{domain}_{kind}'] = folder
        cv2.imwrite(os.path.join(folder, f'{index:04d}.png'), img)

    for i in paired:
        write('paired', 'gt', i, render_clean(crops[i], DEMO_CAMERA))
        write('paired', 'lq', i, noisy(crops[i]))
    for i in source:
        write('source', 'gt', i, render_clean(crops[i], DEMO_CAMERA))
    for i in target:
        write('target', 'lq', i, noisy(crops[i]))
    for j, name in enumerate(TEST_IMAGES):
        for k, c in enumerate(_random_crops(_read_sample(name), test_crop, 2, rng)):
            write('test', 'gt', 2 * j + k, render_clean(c, DEMO_CAMERA))
            write('test', 'lq', 2 * j + k, noisy(c))
    true_rng = np.random.default_rng([seed, 1])
    for i in source:
        write('source', 'lq', i, noisy(crops[i], true_rng))
    facts = {
        'shot': DEMO_CAMERA.shot,
        'read': DEMO_CAMERA.read,
        'gains': [low, high],
        'paired': len(paired),
        'source': len(source),
        'target': len(target),
        'test': 2 * len(TEST_IMAGES)
    }
    return folders, facts

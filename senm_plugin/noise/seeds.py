"""Seeds of every random draw made per image: each comes from (seed, image index, stream) alone, so the batch size,
the grouping of images, the number of processes and an interruption change no image."""
import numpy as np

# the independent random streams of one image
STREAM_LEVEL, STREAM_PICK, STREAM_LATENT = 0, 1, 2  # its level (SIDD prior), its real image's level, its latents
STREAM_GAUSSIAN, STREAM_POISSON_GAUSSIAN = 3, 4  # the baselines' noise in ``basicsr evaluate`` and the demo


def image_seed(seed, index, stream):
    """A 63-bit seed for one random stream of image ``index``, fixed by (seed, index, stream)."""
    return int(np.random.SeedSequence([seed, index, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))

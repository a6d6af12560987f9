"""The pictures of ``basicsr evaluate noise``: a grid of clean / noisy / noise images, and line plots of the noise
histograms and of the noise level against intensity."""
import cv2
import numpy as np

NOISE_GAIN = 4  # noise pictures show 128 + 4 * (noisy - clean) in 8-bit levels
TILE = 128  # grid tiles are resized to this height
COLORS = {'real': '#000000', 'generated': '#d62728', 'gaussian': '#1f77b4', 'poisson_gaussian': '#2ca02c',
          'gaussian_per_image': '#9467bd'}


def _noise_picture(noisy, clean):
    return np.clip(128 + NOISE_GAIN * (noisy.astype(np.float64) - clean), 0, 255).astype(np.uint8)


def _tile(img):
    h, w = img.shape[:2]
    width = max(1, round(w * TILE / h))
    return cv2.resize(img, (width, TILE), interpolation=cv2.INTER_NEAREST)


def write_grid(path, clean_imgs, real_imgs, gen_imgs, names, label='generated'):
    """Rows of clean | real noisy | generated noisy | real noise | generated noise, with a header (OpenCV only)."""
    titles = ['clean', 'real noisy', f'{label} noisy', 'real noise', f'{label} noise']
    rows, widths = [], None
    for x, y, g in zip(clean_imgs, real_imgs, gen_imgs):
        tiles = [_tile(t) for t in (x, y, g, _noise_picture(y, x), _noise_picture(g, x))]
        sizes = [t.shape[1] for t in tiles]
        widths = sizes if widths is None else [max(a, b) for a, b in zip(widths, sizes)]
        rows.append(tiles)
    gap = 4
    canvas_w = sum(widths) + gap * (len(widths) + 1)
    header = 22
    canvas = np.full((header + len(rows) * (TILE + gap) + gap, canvas_w, 3), 255, np.uint8)
    x0 = gap
    for c, width in enumerate(widths):
        cv2.putText(canvas, titles[c][:max(4, width // 7)], (x0, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for r, tiles in enumerate(rows):
            t = tiles[c]
            y0 = header + r * (TILE + gap)
            canvas[y0:y0 + TILE, x0:x0 + t.shape[1]] = t
        x0 += width + gap
    cv2.imwrite(path, canvas)
    return path


def plot_lines(path, series, labels, title, xlabel, ylabel, log_y=False):
    """Line plot of {key: (x, y)} as a PNG (matplotlib, a dependency; no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    names = {'real': 'real noise', **labels}
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for key, (x, y) in series.items():
        y = np.asarray(y, dtype=np.float64)
        ax.plot(x, y, label=names.get(key, key), color=COLORS.get(key), linewidth=2.4 if key == 'real' else 1.4,
                linestyle='-' if key in ('real', 'generated') else '--')
    if log_y:
        ax.set_yscale('log')
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path

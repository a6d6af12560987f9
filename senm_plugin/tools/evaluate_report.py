"""The report of ``basicsr evaluate noise``: ``report.json``, ``report.md`` with its summary table, and the three
pictures (``grid.png``, ``histogram.png``, ``noise_level.png``)."""
import math
import os
from os import path as osp

import numpy as np

from senm_plugin.fileutil import write_json_atomic
from senm_plugin.tools.plots import NOISE_GAIN, plot_lines, write_grid

PICTURES = {'grid': 'grid.png', 'histogram': 'histogram.png', 'noise_level': 'noise_level.png'}


def write_report(report, out_dir, clean_imgs, real_imgs, generated_imgs, curves, hists, num_grid=4, log=print):
    """Write the pictures, ``report.json`` and ``report.md`` of a ``score_noise`` report into ``out_dir``; returns
    the report with its ``pictures`` entry."""
    os.makedirs(out_dir, exist_ok=True)
    names = list(report['per_image'])
    labels = {k: m['label'] for k, m in report['metrics'].items()}
    label = labels['generated']
    write_grid(osp.join(out_dir, PICTURES['grid']), clean_imgs[:num_grid], real_imgs[:num_grid],
               generated_imgs[:num_grid], names[:num_grid], label)
    plot_lines(osp.join(out_dir, PICTURES['histogram']), hists, labels, 'Noise histograms (all pixels and channels)',
               'noise (8-bit levels)', 'density', log_y=True)
    plot_lines(osp.join(out_dir, PICTURES['noise_level']), curves, labels, 'Noise level against intensity',
               'clean intensity (8-bit)', 'noise std (8-bit levels)')
    keys = list(report)
    at = keys.index('fid') + 1
    report = {**{k: report[k] for k in keys[:at]}, 'pictures': dict(PICTURES), **{k: report[k] for k in keys[at:]}}
    write_json_atomic(osp.join(out_dir, 'report.json'), jsonable(report))
    with open(osp.join(out_dir, 'report.md'), 'w') as f:
        f.write(markdown_report(report))
    log(summary_table(report))
    log(f'report: {osp.join(out_dir, "report.md")}')
    return report


def jsonable(obj):
    """``obj`` with NumPy values as Python ones and non-finite floats as None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _cell(text):
    """``text`` safe inside a Markdown table cell (a ``|`` would start a new column)."""
    return str(text).replace('|', '\\|').replace('\n', ' ')


def _fmt(value, digits=4):
    return '-' if value is None or not math.isfinite(value) else f'{value:.{digits}f}'


def summary_table(report):
    """The metrics as a Markdown table (lower is better for the scores; the std should match the real one)."""
    lines = ['| noise model | KLD | AKLD | FID | noise std (8-bit) | worst channel shift (8-bit) |',
             '|---|---|---|---|---|---|']
    for m in report['metrics'].values():
        lines.append(f'| {_cell(m["label"])} | {_fmt(m["kld"])} | {_fmt(m["akld"])} | {_fmt(m["fid"], 2)} | '
                     f'{_fmt(m["noise_std_8bit"], 2)} | {_fmt(m.get("colour_shift_8bit"), 2)} |')
    lines.append(f'| real noise | 0 | 0 | 0 | {_fmt(report["real_noise_std_8bit"], 2)} | '
                 f'{_fmt(report.get("real_colour_shift_8bit"), 2)} |')
    return '\n'.join(lines)


def markdown_report(report):
    """The short Markdown report: the table, what the baselines are, and the pictures."""
    closest = report['closest_by_kld']
    lines = [
        '# Noise evaluation', '',
        f'{report["num_images"]} clean/real-noisy pairs. Lower is better for every metric: KLD between the grey-level '
        'histograms of generated and real noisy images (SeNM-VAE `compute_kl.py`), AKLD between local Gaussian fits '
        'of the noise (DANet), FID between the noisy image sets.', '',
        summary_table(report), '',
    ]
    if closest:
        lines += [f'Closest to the real noise by KLD: **{report["metrics"][closest]["label"]}**.', '']
    fitted = report['baselines']
    if 'gaussian' in fitted:
        lines.append(f'- Gaussian baseline: sigma = {fitted["gaussian"]["sigma_8bit"]:.3f} (8-bit levels), fitted '
                     'to the real pairs (root mean square of y - x).')
    pg = fitted.get('poisson_gaussian', {})
    if 'a' in pg:
        lines.append(f'- Poisson-Gaussian baseline: var(y - x) = a x + b with a = {pg["a"]:.3g}, b = {pg["b"]:.3g} '
                     '(x in [0, 1]), fitted by least squares over intensity bins.')
    elif 'skipped' in pg:
        lines.append(f'- Poisson-Gaussian baseline skipped: {pg["skipped"]}')
    lines += [f'- {report["fid"]}', '',
              '## Pictures', '',
              f'Clean | real noisy | generated noisy | real noise | generated noise (noise shown as 128 + '
              f'{NOISE_GAIN} x noise):', '', f'![grid]({report["pictures"]["grid"]})', '',
              f'![noise histograms]({report["pictures"]["histogram"]})', '',
              f'![noise level against intensity]({report["pictures"]["noise_level"]})', '']
    return '\n'.join(lines)

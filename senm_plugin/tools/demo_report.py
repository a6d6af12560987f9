"""The demo's summary: ``summary.json`` and ``summary.md``, whose verdict says in words whether the learned noise beat
each baseline and whether its synthetic pairs lifted the denoiser."""
import json
import os

# the denoisers the demo trains: (key, label); each differs only in its training pairs
DENOISERS = (('pairs_only', '{pairs} real pairs only'),
             ('gaussian_plus_pairs', 'fitted-Gaussian synthetic + real pairs'),
             ('synthetic_plus_pairs', 'SeNM-VAE synthetic + real pairs'),
             ('true_noise_plus_pairs', 'true noise of the same clean-only images + real pairs (yardstick)'))


def verdicts(summary):
    """Sentences that say whether the learned noise beat each baseline and whether its pairs lifted the denoiser."""
    noise, den = summary['noise'], summary['denoise']
    gen = noise['generated']
    lines = []
    for key in ('gaussian', 'poisson_gaussian', 'gaussian_per_image'):
        if key not in noise:
            continue
        base = noise[key]
        wins = [m.upper() for m in ('kld', 'akld') if gen[m] < base[m]]
        losses = [m.upper() for m in ('kld', 'akld') if gen[m] >= base[m]]
        if not losses:
            lines.append(f'- SeNM-VAE noise is closer to the real noise than {base["label"]} noise on KLD and AKLD.')
        elif not wins:
            lines.append(f'- SeNM-VAE noise does NOT beat {base["label"]} noise: worse on KLD and AKLD.')
        else:
            lines.append(f'- SeNM-VAE noise beats {base["label"]} noise on {" and ".join(wins)} but not on '
                         f'{" and ".join(losses)}.')
    lines.append(
        f'- Generated noise std {gen["noise_std_8bit"]:.2f} against the real {summary["real_noise_std_8bit"]:.2f} '
        '(8-bit levels).')
    if 'colour_shift_8bit' in gen:
        shift = gen['colour_shift_8bit']
        lines.append(f'- Colour cast of the generated images: worst channel shift {shift:.2f} (8-bit levels), '
                     f'{"within" if shift <= 2 else "NOT within"} 2.')
    synth, pairs = den['synthetic_plus_pairs']['psnr'], den['pairs_only']['psnr']
    verb = 'lifted' if synth > pairs else 'did NOT lift'
    lines.append(f'- SeNM-VAE synthetic pairs {verb} the denoiser: {synth:.2f} dB against {pairs:.2f} dB on the real '
                 f'pairs alone ({synth - pairs:+.2f} dB).')
    if 'gaussian_plus_pairs' in den:
        gauss = den['gaussian_plus_pairs']['psnr']
        verb = 'beat' if synth > gauss else 'did NOT beat'
        lines.append(f'- They {verb} pairs synthesized with the fitted Gaussian: {gauss:.2f} dB ({synth - gauss:+.2f} '
                     'dB).')
    if 'true_noise_plus_pairs' in den:
        true = den['true_noise_plus_pairs']
        lines.append(f'- Yardstick: the same clean-only images with their true noise give {true["psnr"]:.2f} dB '
                     f'(SSIM {true["ssim"]:.4f}); SeNM-VAE pairs {synth - true["psnr"]:+.2f} dB (SSIM '
                     f'{den["synthetic_plus_pairs"]["ssim"] - true["ssim"]:+.4f}) from it. No noise model can be '
                     'expected to beat the true noise; where the Gaussian beats it too, this denoiser budget rewards '
                     'easy noise rather than faithful noise.')
    best_key = max((k for k in den if isinstance(den[k], dict)), key=lambda k: den[k]['psnr'])
    best, noisy = den[best_key], den['noisy_psnr']
    gain = 'above' if best['psnr'] > noisy else 'NOT above'
    lines.append(f'- The best denoiser is {gain} the noisy input on PSNR: {best["psnr"]:.2f} dB against {noisy:.2f} dB '
                 f'(SSIM {best["ssim"]:.4f} against {den["noisy_ssim"]:.4f}); at these training budgets the '
                 'denoisers are small and short-trained.')
    return lines


def summary_markdown(summary, title='basicsr demo'):
    """The Markdown summary of a demo (or benchmark) run: data, verdict, noise and denoising tables."""
    facts, noise, den = summary['data'], summary['noise'], summary['denoise']
    gains = facts.get('gains') or [1, 1]
    gain_text = f', gain {gains[0]:g}-{gains[1]:g} per capture' if gains[0] != gains[1] else ''
    camera = facts.get('camera') or (f'simulated sRGB pipeline (raw shot {facts["shot"]}, read {facts["read"]}'
                                     f'{gain_text}; Bayer mosaic, demosaicing, white balance, colour matrix, gamma)')
    lines = [
        f'# {title}', '',
        f'Camera: {camera}. Data: {facts["paired"]} real pairs, {facts["source"]} clean-only and '
        f'{facts["target"]} noisy-only crops, {facts["test"]} held-out test pairs; {summary["synthetic_pairs"]} '
        f'synthetic pairs. Iterations: SeNM-VAE {summary["iters"]["senm"]}, ScaoedNet {summary["iters"]["denoiser"]}. '
        f'Run time {summary["seconds"]} s.', '', '## Verdict', ''
    ]
    lines += verdicts(summary)
    lines += [
        '', '## Noise quality on the held-out pairs (lower is better)', '',
        '| noise model | KLD | AKLD | noise std (8-bit) |', '|---|---|---|---|'
    ]
    for entry in noise.values():
        lines.append(f'| {entry["label"]} | {entry["kld"]:.4f} | {entry["akld"]:.4f} | {entry["noise_std_8bit"]:.2f} |')
    lines.append(f'| real noise | 0 | 0 | {summary["real_noise_std_8bit"]:.2f} |')
    lines += [
        '', '## Denoising on the held-out pairs', '', '| input / denoiser | PSNR (dB) | SSIM |', '|---|---|---|',
        f'| noisy input | {den["noisy_psnr"]:.2f} | {den["noisy_ssim"]:.4f} |'
    ]
    for key, label in DENOISERS:
        if key in den:
            label = label.format(pairs=facts['paired'])
            lines.append(f'| ScaoedNet, {label} | {den[key]["psnr"]:.2f} | {den[key]["ssim"]:.4f} |')
    lines += [
        '', 'Pictures: `noise/grid.png` (clean | real noisy | generated | real noise | generated noise), '
        '`noise/histogram.png`, `noise/noise_level.png`; full noise report: `noise/report.md`.'
    ]
    return '\n'.join(lines) + '\n'


def write_summary(summary, out, title='basicsr demo'):
    """``summary.json`` and ``summary.md`` in ``out``; returns the Markdown text."""
    with open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    text = summary_markdown(summary, title)
    with open(os.path.join(out, 'summary.md'), 'w') as f:
        f.write(text)
    return text

"""``basicsr export onnx``: ScaoedNet (denoising) or SeNM-VAE ``translate`` (noise synthesis) as an ONNX graph with
dynamic batch, height and width, checked against PyTorch with onnxruntime.

    basicsr export onnx --model net_g.pth --arch ScaoedNet --network-opt options/train/scaoednet_sidd.yml --out den.onnx
    basicsr export onnx --model net_g.pth --arch SeNMVAE-translate --network-opt options/train/senm_cpu.yml \
        --residual level --out noise.onnx

Inputs are RGB in [0, 1], NCHW float32; any height and width (the graph pads to the multiple the network needs by
reflection and crops back). The SeNM-VAE graph takes ``clean`` and ``level`` (one noise level per image, std in [0, 1]
units) and samples its latents with ONNX's RandomNormalLike: each run of a session draws new noise (onnxruntime
starts every new session from the same random state; not torch's random stream). Its parity check exports the same
network with every latent at its mean.
"""
import argparse
import os
import sys

import numpy as np
import torch
from torch.nn import functional as F

ARCHS = ('ScaoedNet', 'SeNMVAE-translate')


class ExportError(RuntimeError):
    """An export that cannot be made or does not match PyTorch."""


def _pad_crop(fn, x, multiple, mode):
    """``fn`` of ``x`` padded (``mode``) at the bottom/right to a multiple of ``multiple``, cropped back; traceable
    with dynamic sizes (the pad is computed from the traced shape, never skipped by a Python branch)."""
    h, w = x.shape[-2], x.shape[-1]
    pad_h, pad_w = (multiple - h % multiple) % multiple, (multiple - w % multiple) % multiple
    return fn(F.pad(x, (0, pad_w, 0, pad_h), mode=mode))[..., :h, :w]


class DenoiseGraph(torch.nn.Module):
    """ScaoedNet's restoration (the forward pass) for export."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, noisy):
        return _pad_crop(self.net, noisy, 2, 'replicate')  # as ScaoedNet.forward pads odd sizes


class TranslateGraph(torch.nn.Module):
    """SeNM-VAE ``translate`` for export: ``(clean, level) -> noisy``."""

    def __init__(self, net, temperature=1.0, residual=False, deterministic=False):
        super().__init__()
        self.net, self.temperature, self.residual, self.deterministic = net, temperature, residual, deterministic
        self.multiple = 2**(len(net.num_latent_layers) - 1 + net.num_down)

    def forward(self, clean, level):
        return _pad_crop(
            lambda x: self.net.translate(x, level, temperature=self.temperature, deterministic=self.deterministic,
                                         channels_last=False, residual=self.residual), clean, self.multiple,
            'reflect')  # as basicsr generate pads


def _export(graph, inputs, names, path, opset):
    dynamic = {name: ({0: 'batch', 2: 'height', 3: 'width'} if x.dim() == 4 else {0: 'batch'})
               for name, x in zip(names, inputs)}
    dynamic['output'] = {0: 'batch', 2: 'height', 3: 'width'}
    torch.onnx.export(graph, tuple(inputs), path, input_names=list(names), output_names=['output'],
                      dynamic_axes=dynamic, opset_version=opset, dynamo=False)


def run_onnx(path, feeds):
    """Run an exported graph with onnxruntime on CPU; returns its output."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ExportError('the check needs onnxruntime: pip install onnxruntime (or pass --no-check)') from err
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, {k: v.numpy() for k, v in feeds.items()})[0]


def build(arch, model, network_opt, param_key='params'):
    """The network of ``arch`` with the weights of ``model``, in eval mode on the CPU."""
    from senm_plugin.errors import GenerateError
    from senm_plugin.noise.model import load_senmvae, network_options
    if arch == 'SeNMVAE-translate':
        net = load_senmvae(model, network_opt, 'cpu', param_key)
        net.winograd = False  # the CPU kernel is not an ONNX operator
        return net
    from senm_plugin.archs.scaoednet_arch import ScaoedNet
    from senm_plugin.checkpoint import CheckpointError, load_network_weights
    if not model or not os.path.isfile(model):
        raise ExportError(f'--model: checkpoint {model} not found')
    try:
        opts = network_options(network_opt, 'network_g', '--network-opt')
        net = ScaoedNet(**opts)
        load_network_weights(net, model, param_key=param_key, strict=True)
    except (CheckpointError, GenerateError, TypeError) as err:
        raise ExportError(str(err)) from err
    return net.eval()


def export_onnx(arch, net, out, size=64, opset=17, temperature=1.0, residual=False, check=True):
    """Write ``net`` as ONNX to ``out``; returns the max abs difference to PyTorch on a random input (None without
    ``check``). The check runs a batch of 2 at a size other than the traced one, so the dynamic axes are exercised."""
    if arch not in ARCHS:
        raise ExportError(f'--arch must be one of {ARCHS}, got {arch!r}')
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    g = torch.Generator().manual_seed(0)
    example = torch.rand(1, 3, size, size, generator=g)
    probe = torch.rand(2, 3, size + 6, size - 2, generator=g)
    with torch.no_grad():
        if arch == 'ScaoedNet':
            graph = DenoiseGraph(net)
            _export(graph, [example], ['noisy'], out, opset)
            if not check:
                return None
            return float(np.abs(run_onnx(out, {'noisy': probe}) - graph(probe).numpy()).max())
        level = torch.full((1, ), 0.04)
        _export(TranslateGraph(net, temperature, residual), [example, level], ['clean', 'level'], out, opset)
        if not check:
            return None
        # parity with every latent at its mean (sampling draws from different random streams in ONNX and torch)
        det = TranslateGraph(net, temperature, residual, deterministic=True)
        det_path = out + '.check.onnx'
        try:
            _export(det, [example, level], ['clean', 'level'], det_path, opset)
            levels = torch.tensor([0.02, 0.06])
            return float(np.abs(run_onnx(det_path, {'clean': probe, 'level': levels}) -
                                det(probe, levels).numpy()).max())
        finally:
            if os.path.exists(det_path):
                os.remove(det_path)


def main(argv=None):
    """Entry point of ``basicsr export``; returns the exit code."""
    p = argparse.ArgumentParser(prog='basicsr export', description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='what', required=True)
    o = sub.add_parser('onnx', help='export ScaoedNet or SeNM-VAE translate as ONNX')
    o.add_argument('--model', required=True, help='checkpoint (.pth or .safetensors)')
    o.add_argument('--arch', required=True, choices=ARCHS)
    o.add_argument('--network-opt', metavar='JSON|YML', help='network options: JSON or an option file (network_g)')
    o.add_argument('--param-key', default='params')
    o.add_argument('--out', required=True, help='ONNX file to write')
    o.add_argument('--size', type=int, default=64, help='height and width traced (any size runs later; default 64)')
    o.add_argument('--opset', type=int, default=17)
    o.add_argument('--temperature', type=float, default=1.0, help='SeNMVAE-translate: scale of the zn draws')
    o.add_argument('--residual', choices=('clean', 'mean', 'level'), help='SeNMVAE-translate: as basicsr generate')
    o.add_argument('--no-check', action='store_true', help='skip the onnxruntime comparison')
    args = p.parse_args(argv)
    from senm_plugin.errors import GenerateError
    try:
        if args.size < 8 or args.size % 8:
            raise ExportError(f'--size must be a multiple of 8 and at least 8, got {args.size}')
        net = build(args.arch, args.model, args.network_opt, args.param_key)
        diff = export_onnx(args.arch, net, args.out, args.size, args.opset, args.temperature, args.residual or False,
                           not args.no_check)
    except (ExportError, GenerateError) as err:
        print(f'basicsr export {args.what}: error: {err}', file=sys.stderr)
        return 1
    print(f'basicsr export: wrote {args.out}' +
          ('' if diff is None else f'; onnxruntime vs PyTorch on a random 2x3x{args.size + 6}x{args.size - 2} input: '
           f'max abs diff {diff:.2e}' + (' (latents at their means)' if args.arch != 'ScaoedNet' else '')))
    return 0


if __name__ == '__main__':
    sys.exit(main())

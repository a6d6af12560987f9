"""Winograd F(4x4, 3x3) convolution on CPU, for inference and training: 3x3 convolutions with 4x fewer
multiplications.

oneDNN ships Winograd kernels only for AVX-512 CPUs; on AVX2 machines its direct 3x3 convolution is the
bottleneck of ScaoedNet and SeNM-VAE. Here the transforms and the 36 per-tile GEMMs are a small C++ extension
(``csrc/winograd.cpp``, compiled on first use with ``torch.utils.cpp_extension`` and cached by torch) that works
through the image a block of tiles at a time, in cache: the forward, and for training the input gradient (the same
kernel on flipped weights) and the weight gradient (per-tile outer products in the transformed domain). The
algorithm is exact in real arithmetic (matrices from Lavin & Gray, CVPR 2016); in float32 its rounding error is a
few times the direct convolution's (4e-5 against 8e-6 on outputs of magnitude ~6).

Where the extension cannot be built (no C++ compiler, no ninja) :func:`winograd_convs` logs why once and the
network runs its ordinary convolutions.
"""
import contextlib
import functools
import glob
import hashlib
import os
import platform
import threading
import weakref

import torch
from torch import nn as nn

from basicsr.utils import get_root_logger

# F(4x4, 3x3): y = A^T [(G g G^T) * (B^T d B)] A, Lavin & Gray (2016), Section 4.2
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
# tiles a thread transforms and multiplies at a time: 2 x 36 x 12 x 64 floats = 216 KiB stay in a core's L2;
# 6 to 24 measured within 5% of each other at 128x128 and 256x256 (48 and up: 25% slower)
TILE_BLOCK = 12
# narrower convolutions are faster direct: the transforms cost as much as the GEMM saves. Per conv at 128x128 here:
# 64->64 1.55x, 32->32 1.31x, 64->12 1.07x faster; 12->64 0.86x, 16->16 0.78x, 64->4 0.41x, 64->1 0.51x
MIN_CHANNELS = 32

_lock = threading.Lock()
_kernel = None
_error = None
# conv -> (weight version key, U): weights are transformed again only after they change
_transformed = weakref.WeakKeyDictionary()


def load_kernel():
    """The compiled transforms, or None (with the reason in :func:`kernel_error`) when they cannot be built."""
    global _kernel, _error
    with _lock:
        if _kernel is None and _error is None:
            if os.environ.get('SENM_WINOGRAD', '1') == '0':
                _error = 'disabled by SENM_WINOGRAD=0'
            else:
                _kernel, _error = _build()
            if _error is not None:
                get_root_logger().warning(f'Winograd 3x3 kernel unavailable ({_error}); using the direct '
                                          'convolutions (slower on CPUs without AVX-512).')
        return _kernel


def kernel_error():
    """Why the kernel is not available (None when it is, or before the first :func:`load_kernel`)."""
    return _error


def _cpu_tag():
    """A short fingerprint of this CPU's instruction sets: a home directory shared by different machines then holds
    one ``-march=native`` build per kind of CPU instead of one that crashes on the others."""
    flags = platform.processor()
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line for line in f if line.startswith(('flags', 'Features'))), flags)
    except OSError:
        pass
    return hashlib.sha1(f'{platform.machine()} {flags}'.encode()).hexdigest()[:8]


def _build():
    from torch.utils import cpp_extension
    source = os.path.join(os.path.dirname(__file__), 'csrc', 'winograd.cpp')
    # -fopenmp: at::parallel_for is inline OpenMP; the extension then binds to the libgomp torch already loaded
    flags = ['-O3', '-fopenmp']
    if os.environ.get('SENM_WINOGRAD_NATIVE', '1') != '0':
        flags.append('-march=native')  # built on the machine it runs on, so its vector units are fair game
    name = f'senm_winograd_{_cpu_tag()}'
    try:
        import ninja  # the pip package: its binary is not on PATH when the virtualenv is not activated
        if ninja.BIN_DIR not in os.environ.get('PATH', '').split(os.pathsep):
            os.environ['PATH'] = ninja.BIN_DIR + os.pathsep + os.environ.get('PATH', '')
    except (ImportError, AttributeError):
        pass
    try:
        build_dir = cpp_extension._get_build_directory(name, verbose=False)
        if not glob.glob(os.path.join(build_dir, '*.so')):
            get_root_logger().info(f'Compiling the Winograd 3x3 kernel into {build_dir} (once per machine, ~1 min).')
        return cpp_extension.load(name, [source], extra_cflags=flags, extra_ldflags=['-fopenmp'],
                                  verbose=False), None
    except Exception as err:  # noqa: BLE001 - any build failure means: fall back to the direct convolution
        lines = str(err).strip().splitlines()
        return None, f'{type(err).__name__}: {lines[-1] if lines else ""}'


def _require_kernel():
    kernel = load_kernel()
    if kernel is None:
        raise RuntimeError(f'the Winograd kernel is unavailable: {kernel_error()}')
    return kernel


def _padded(c):
    return (c + 7) // 8 * 8


def _channels_inner(x):
    """Whether ``x``'s channels are contiguous per pixel (channels-last, or a channel slice of such a tensor), the
    layout the kernel reads."""
    return x.shape[1] == 1 or x.stride(1) == 1


@functools.lru_cache(maxsize=None)
def _kron_g(device):
    """kron(G, G), (36, 9) in float64: vec(G g G^T) = kron(G, G) vec(g) turns every (o, c) filter's transform into
    one row of a single GEMM."""
    g = torch.tensor(_G, dtype=torch.float64, device=device)
    return torch.kron(g, g)


def transform_weight(weight):
    """U = G g G^T for a (O, C, 3, 3) weight, as the (36, C, O) right-hand sides of the per-tile GEMMs, with C and
    O zero-padded to multiples of 8 (the kernel's vector width). Computed in float64: float32 here would add its
    rounding to the kernel's."""
    o, c = weight.shape[:2]
    u = torch.mm(_kron_g(weight.device), weight.detach().reshape(o * c, 9).t().double())  # (36, O * C)
    out = weight.new_zeros((36, _padded(c), _padded(o)))
    out[:, :c, :o] = u.view(36, o, c).transpose(1, 2)
    return out


def untransform_grad(grad_u, weight_shape):
    """The weight gradient G^T dU G, (O, C, 3, 3), from the gradient of :func:`transform_weight`'s output."""
    o, c = weight_shape[:2]
    du = grad_u[:, :c, :o].transpose(1, 2).reshape(36, o * c)  # (36, O * C)
    return torch.mm(_kron_g(grad_u.device).t().to(grad_u.dtype), du).t().reshape(o, c, 3, 3)


def eligible(conv):
    """Whether ``conv`` is a 3x3 / stride 1 / pad 1 / ungrouped float32 convolution the kernel computes, with at
    least ``MIN_CHANNELS`` input and output channels (where it is faster than the direct convolution)."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == 'zeros' and conv.weight.dtype == torch.float32
            and min(conv.in_channels, conv.out_channels) >= MIN_CHANNELS)


def winograd_conv3x3(x, u, bias=None, relu=False, kernel=None, out_channels=None):
    """3x3 'same' convolution of a float32 CPU batch ``x`` whose channels are contiguous per pixel (channels-last,
    or a channel slice of such a tensor) with transformed weights ``u`` (:func:`transform_weight`; pass
    ``out_channels`` when it is not a multiple of 8, as ``u`` is padded); returns a channels-last tensor. ``relu``
    applies a ReLU in the same pass. No autograd: see :class:`WinogradConv3x3` for that."""
    kernel = kernel or _require_kernel()
    n, _, h, w = x.shape
    y = torch.empty((n, out_channels or u.shape[2], h, w), dtype=x.dtype, device=x.device,
                    memory_format=torch.channels_last)
    kernel.conv3x3(x.permute(0, 2, 3, 1), u, bias, y.permute(0, 2, 3, 1), relu, TILE_BLOCK)
    return y


class WinogradConv3x3(torch.autograd.Function):
    """Differentiable 3x3 'same' convolution, all through the Winograd kernel: the forward, the input gradient (a
    3x3 convolution of the output gradient with the flipped, transposed weights) and the weight gradient
    (G^T [sum over tiles of V^T dM] G). Works in channels-last layout; returns channels-last tensors."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        if not _channels_inner(x):
            x = x.contiguous(memory_format=torch.channels_last)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return winograd_conv3x3(x, transform_weight(weight), None if bias is None else bias.detach(),
                                out_channels=weight.shape[0])

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        if not _channels_inner(grad_y):
            grad_y = grad_y.contiguous(memory_format=torch.channels_last)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            flipped = weight.detach().flip(2, 3).transpose(0, 1)  # (C, O, 3, 3)
            grad_x = winograd_conv3x3(grad_y, transform_weight(flipped), out_channels=weight.shape[1])
        if ctx.needs_input_grad[1]:
            grad_u = _require_kernel().conv3x3_grad_u(x.permute(0, 2, 3, 1), grad_y.permute(0, 2, 3, 1), TILE_BLOCK)
            grad_w = untransform_grad(grad_u, weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b


@contextlib.contextmanager
def winograd_convs(module, enabled=True, training=False):
    """Inside the block, ``module``'s eligible 3x3 convolutions run through the Winograd kernel whenever their
    input is a float32 CPU tensor (channels-last, or any layout with ``training``); other inputs take the usual
    path.

    Without ``training`` only calls that need no gradient use the kernel, with the weights transformed on entry
    (cached until they change: do not change them inside the block). With ``training``, calls that need gradients
    go through :class:`WinogradConv3x3`, which transforms the current weights on every call. Does nothing when
    ``enabled`` is False or the kernel cannot be built.
    """
    convs = [m for m in module.modules() if eligible(m)] if enabled else []
    # a network with no eligible convolution (e.g. the demo's 16-channel ones) never builds the kernel
    kernel = load_kernel() if convs else None
    convs = convs if kernel is not None else []
    outer = [vars(conv).get('forward') for conv in convs]  # set by an enclosing block, if any
    for conv in convs:
        conv.forward = _winograd_forward(conv, kernel, training)
    try:
        yield module
    finally:
        for conv, forward in zip(convs, outer):
            if forward is None:
                del conv.forward
            else:
                conv.forward = forward


def _cached_transform(conv):
    weight = conv.weight
    # the version counter moves with every in-place change (optimiser steps, load_state_dict) but not when a
    # layout change swaps the storage (channels_last_weights), which keeps the values
    key = (id(weight), weight._version, weight.shape, weight.device)
    cached = _transformed.get(conv)
    if cached is None or cached[0] != key:
        cached = (key, transform_weight(weight))
        _transformed[conv] = cached
    return cached[1]


def _winograd_forward(conv, kernel, training):
    direct = type(conv).forward.__get__(conv)
    params = [p for p in (conv.weight, conv.bias) if p is not None]
    u = None if training else _cached_transform(conv)

    def forward(x):
        if x.device.type != 'cpu' or x.dtype != torch.float32 or x.dim() != 4:
            return direct(x)
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))
        if needs_grad:
            return WinogradConv3x3.apply(x, conv.weight, conv.bias) if training else direct(x)
        if not _channels_inner(x):
            if not training:
                return direct(x)
            x = x.contiguous(memory_format=torch.channels_last)
        bias = None if conv.bias is None else conv.bias.detach()
        return winograd_conv3x3(x, u if u is not None else _cached_transform(conv), bias, kernel=kernel,
                                out_channels=conv.out_channels)

    return forward

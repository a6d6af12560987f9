"""Winograd F(4x4, 3x3) kernel: agreement with the direct convolution, when it applies, weight caching, fallback."""
import shutil

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from senm_plugin.ops import winograd

needs_compiler = pytest.mark.skipif(
    shutil.which('c++') is None and shutil.which('g++') is None, reason='no C++ compiler to build the kernel')


@pytest.fixture(autouse=True)
def any_width(monkeypatch):
    """The tests' small convolutions take the kernel too (by default only >= MIN_CHANNELS-wide ones do)."""
    monkeypatch.setattr(winograd, 'MIN_CHANNELS', 1)


@pytest.fixture(scope='module')
def kernel():
    k = winograd.load_kernel()
    assert k is not None, f'a C++ compiler is present but the kernel did not build: {winograd.kernel_error()}'
    return k


def channels_last(*shape, seed=0):
    torch.manual_seed(seed)
    return torch.randn(*shape).contiguous(memory_format=torch.channels_last)


@needs_compiler
@pytest.mark.parametrize('shape, out_ch', [((1, 64, 20, 28), 64), ((2, 16, 13, 7), 32), ((3, 8, 5, 3), 24),
                                           ((1, 8, 1, 1), 8), ((2, 65, 9, 10), 32), ((1, 13, 6, 7), 65)])
@pytest.mark.parametrize('use_bias, relu', [(True, False), (False, True)])
def test_matches_direct_convolution(kernel, shape, out_ch, use_bias, relu):
    x = channels_last(*shape)
    weight = torch.randn(out_ch, shape[1], 3, 3) * (2 / (9 * shape[1]))**0.5
    bias = torch.randn(out_ch) if use_bias else None
    exact = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), padding=1)
    if relu:
        exact = exact.clamp(min=0)
    out = winograd.winograd_conv3x3(x, winograd.transform_weight(weight), bias, relu=relu, kernel=kernel,
                                    out_channels=out_ch)
    assert out.shape == exact.shape and out.is_contiguous(memory_format=torch.channels_last)
    direct = F.conv2d(x, weight, bias, padding=1)
    direct_err = ((direct.clamp(min=0) if relu else direct).double() - exact).abs().max().item()
    err = (out.double() - exact).abs().max().item()
    # float32 Winograd F(4,3) rounds a few times worse than direct summation, but stays at float precision
    assert err <= max(10 * direct_err, 1e-6), (err, direct_err)
    assert err < 1e-4 * exact.abs().max().item() + 1e-6


def test_eligibility(monkeypatch):
    assert winograd.eligible(nn.Conv2d(64, 64, 3, padding=1))
    assert winograd.eligible(nn.Conv2d(192, 32, 3, padding=1, bias=False))
    assert winograd.eligible(nn.Conv2d(65, 1, 3, padding=1))  # channels are padded to multiples of 8 inside
    assert not winograd.eligible(nn.Conv2d(64, 64, 1))
    assert not winograd.eligible(nn.Conv2d(64, 64, 3, padding=1, stride=2))
    assert not winograd.eligible(nn.Conv2d(64, 64, 3, padding=1, padding_mode='reflect'))
    assert not winograd.eligible(nn.Conv2d(64, 64, 3, padding=1).double())
    monkeypatch.setattr(winograd, 'MIN_CHANNELS', 32)  # the default: narrow convolutions are faster direct
    assert winograd.eligible(nn.Conv2d(193, 65, 3, padding=1)) and winograd.eligible(nn.Conv2d(32, 32, 3, padding=1))
    assert not winograd.eligible(nn.Conv2d(65, 1, 3, padding=1))
    assert not winograd.eligible(nn.Conv2d(16, 64, 3, padding=1))


@needs_compiler
def test_winograd_convs_swaps_and_restores(kernel):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 1)).eval()
    x = channels_last(2, 8, 11, 9)
    with torch.no_grad():
        expected = net(x)
        with winograd.winograd_convs(net):
            assert 'forward' in vars(net[0]) and 'forward' not in vars(net[2])  # 1x1: not eligible
            calls = []
            original = winograd.winograd_conv3x3
            winograd.winograd_conv3x3 = lambda *a, **k: calls.append(1) or original(*a, **k)
            try:
                out = net(x)
                net(x.contiguous())  # NCHW input takes the direct path
            finally:
                winograd.winograd_conv3x3 = original
        assert 'forward' not in vars(net[0])
    assert calls == [1]
    assert torch.allclose(out, expected, atol=1e-5)
    # with autograd the direct path runs, so gradients flow as usual
    with winograd.winograd_convs(net):
        net(x.requires_grad_()).sum().backward()
    assert net[0].weight.grad is not None and x.grad is not None


@needs_compiler
def test_transformed_weights_follow_weight_changes(kernel):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    x = channels_last(1, 8, 8, 8)
    with torch.no_grad():
        with winograd.winograd_convs(conv):
            first = conv(x)
        conv.weight.mul_(2)
        with winograd.winograd_convs(conv):
            second = conv(x)
        conv.to(memory_format=torch.channels_last)  # same values, new storage: the cached transform still holds
        with winograd.winograd_convs(conv):
            third = conv(x)
    assert torch.allclose(second - conv.bias.view(1, -1, 1, 1), 2 * (first - conv.bias.view(1, -1, 1, 1)),
                          atol=1e-5)
    assert torch.equal(second, third)


def test_disabled_kernel_falls_back(monkeypatch, caplog):
    monkeypatch.setattr(winograd, '_kernel', None)
    monkeypatch.setattr(winograd, '_error', None)
    monkeypatch.setenv('SENM_WINOGRAD', '0')
    assert winograd.load_kernel() is None
    assert winograd.kernel_error() == 'disabled by SENM_WINOGRAD=0'
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    x = channels_last(1, 8, 6, 6)
    with torch.no_grad(), winograd.winograd_convs(conv):
        assert 'forward' not in vars(conv)
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))


@needs_compiler
@pytest.mark.parametrize('use_bias', [True, False])
def test_training_path_gradients_match_direct(kernel, use_bias):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=use_bias), nn.LeakyReLU(0.2),
                        nn.Conv2d(16, 13, 3, padding=1, bias=use_bias))
    x = torch.randn(2, 8, 9, 13, requires_grad=True)  # NCHW: the training path takes any layout
    target = torch.randn(2, 13, 9, 13)

    def grads():
        net.zero_grad()
        x.grad = None
        loss = F.mse_loss(net(x), target)
        loss.backward()
        return [loss.detach(), x.grad.clone()] + [p.grad.clone() for p in net.parameters()]

    expected = grads()
    with winograd.winograd_convs(net, training=True):
        calls = []
        original = winograd.WinogradConv3x3.apply
        winograd.WinogradConv3x3.apply = lambda *a: calls.append(1) or original(*a)
        try:
            got = grads()
        finally:
            winograd.WinogradConv3x3.apply = original
    assert calls == [1, 1]
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        assert torch.allclose(e, g, rtol=1e-4, atol=1e-6), (e - g).abs().max()


@needs_compiler
def test_nested_blocks_restore_the_outer_one(kernel):
    conv = nn.Conv2d(8, 8, 3, padding=1)
    with winograd.winograd_convs(conv, training=True):
        outer = vars(conv)['forward']
        with winograd.winograd_convs(conv):
            assert vars(conv)['forward'] is not outer
        assert vars(conv)['forward'] is outer
    assert 'forward' not in vars(conv)


@needs_compiler
def test_reads_channel_slices_in_place(kernel):
    """The residual dense blocks feed convolutions with channel slices of channels-last tensors: no copy needed."""
    torch.manual_seed(0)
    whole = channels_last(2, 24, 7, 9)
    part = whole[:, 4:20]
    assert not part.is_contiguous(memory_format=torch.channels_last) and part.stride(1) == 1
    weight = torch.randn(8, 16, 3, 3) * 0.1
    out = winograd.winograd_conv3x3(part, winograd.transform_weight(weight), kernel=kernel)
    torch.testing.assert_close(out, F.conv2d(part, weight, padding=1), rtol=1e-4, atol=1e-5)

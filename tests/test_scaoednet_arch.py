"""ScaoedNet architecture: reference layout, noise maps, any-size input, tiling, self-ensemble and bad input."""
import pytest
import torch
from torch import nn

import senm_plugin  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY
from senm_plugin.archs.scaoednet_arch import ScaoedNet
from senm_plugin.archs.inference import self_ensemble, tiled_forward
from senm_plugin.checkpoint import CheckpointError, load_network_weights

TINY = dict(num_feat=8, num_stages=2, num_blocks=1)


def tiny_net(seed=0, **kwargs):
    torch.manual_seed(seed)
    return ScaoedNet(**{**TINY, **kwargs}).eval()


def test_default_layout_matches_reference():
    net = ScaoedNet()
    state = net.state_dict()
    # figures and key names read from the reference DN() of chaoren88/ScaoedNet
    assert sum(p.numel() for p in net.parameters()) == 3371750
    assert len(state) == 572
    expected = {
        'a': (1, ),
        'b': (1, ),
        'head.0.conv.weight': (64, 12, 3, 3),
        'tail.0.conv.weight': (12, 64, 3, 3),
        'DE_Net.head_noisy.conv.weight': (64, 4, 3, 3),
        'DE_Net.ConvNet_Input.0.conv.weight': (64, 128, 1, 1),
        'DE_Net.ConvNet_f0noise.0.conv.bias': (64, ),
        'ini_DE_Net.ConvNet.0.conv.weight': (64, 12, 3, 3),
        'ini_DE_Net.conv1.conv.weight': (4, 64, 3, 3),
        'RE_Net.fusion.0.conv.weight': (64, 128, 1, 1),
        'RE_Net.y_u_cat.0.conv.weight': (64, 128, 1, 1),
        'RE_Net.body.15.CIG_CA.inplaceSA.Conv.conv.weight': (1, 64, 3, 3),
        'RE_Net.body.0.CIG_CA.cat.0.conv.weight': (4, 64, 1, 1),
        'RE_Net.body.0.CIG_SA.compress.Conv.conv.weight': (2, 64, 1, 1),
        'RE_Net.body.0.CIG_SA.inplaceCA.Conv.conv.weight': (4, 4, 1, 1),
        'RE_Net.body.0.CIG_SA.conv_du.1.Conv.conv.weight': (4, 4, 1, 1),
        'RE_Net.body.0.CIG_SA.conv_du.0.conv.weight': (4, 4, 3, 3),
        'RE_Net.body.0.DEM.0.conv.weight': (64, 64, 1, 1),
        'RE_Net.DEM.1.conv.weight': (64, 64, 3, 3),
        'RE_Net.GR.3.conv.bias': (64, ),
        'RE_Net.tail.0.conv.weight': (64, 64, 3, 3),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert 'RE_Net.body.16.head.0.conv.weight' not in state
    # shared modules are one tensor stored under two keys
    assert state['RE_Net.fusion.0.conv.weight'].data_ptr() == state['RE_Net.y_u_cat.0.conv.weight'].data_ptr()
    # the stages share weights: K changes compute, not parameters
    assert ScaoedNet(num_stages=1).state_dict().keys() == state.keys()


def test_registered_and_noise_maps():
    net = ARCH_REGISTRY.get('ScaoedNet')(**TINY).eval()
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        image, maps = net(x, return_noise_maps=True)
        assert torch.equal(net(x), image)
    assert image.shape == x.shape
    assert len(maps) == TINY['num_stages']  # u_ini, u_1, ..., u_{K-1} as in the reference
    assert all(u.shape == (2, 1, 16, 20) for u in maps)


def test_reuse_of_stage_invariants_is_exact():
    net = tiny_net(num_stages=3)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        fast = net(x)
        net.reuse_invariants = False
        plain = net(x)
    assert torch.allclose(fast, plain, atol=1e-6)


@pytest.mark.parametrize('size', [(15, 16), (16, 17), (13, 11), (1, 5)])
def test_odd_sizes_padded_and_cropped(size):
    net = tiny_net()
    h, w = size
    x = torch.rand(1, 3, h, w)
    padded = torch.nn.functional.pad(x, (0, w % 2, 0, h % 2), mode='replicate')
    with torch.no_grad():
        out, maps = net(x, return_noise_maps=True)
        expected = net(padded)[..., :h, :w]
    assert out.shape == x.shape and maps[-1].shape == (1, 1, h, w)
    assert torch.allclose(out, expected, atol=1e-6)


def test_restore_matches_forward():
    net = tiny_net()
    x = torch.rand(1, 3, 18, 14)
    with torch.no_grad():
        expected = net(x)
    out = net.restore(x)
    assert out.is_contiguous() and out.shape == x.shape
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(net.restore(x, channels_last=False), expected, atol=1e-5)


def test_tiling_is_exact_for_a_local_network():
    torch.manual_seed(0)
    local = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))  # radius 2
    x = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        full = local(x)
        tiled = tiled_forward(local, x, tile_size=16, tile_overlap=4)
    assert tiled.shape == full.shape
    assert torch.allclose(tiled, full, atol=1e-6)


def test_scaoednet_tiling():
    net = tiny_net()
    x = torch.rand(1, 3, 40, 34)
    with torch.no_grad():
        full = net(x)
    # one tile covering the image is the untiled result
    assert torch.allclose(net.restore(x, tile_size=64, tile_overlap=8), full, atol=1e-5)
    # smaller tiles: per-tile attention statistics make it close but not identical
    tiled = net.restore(x, tile_size=24, tile_overlap=8)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().mean() < 0.05


def test_self_ensemble():
    x = torch.rand(1, 3, 10, 14)
    # an equivariant function is unchanged by the ensemble
    assert torch.allclose(self_ensemble(lambda t: 2 * t + 1, x), 2 * x + 1, atol=1e-6)
    # a position-dependent one is averaged over the 8 transforms
    out = self_ensemble(lambda t: t * 0 + torch.arange(t.shape[-1], dtype=t.dtype), torch.rand(1, 1, 4, 4))
    assert torch.allclose(out, torch.full((1, 1, 4, 4), 1.5))
    net = tiny_net()
    ens = net.restore(x, use_self_ensemble=True)
    with torch.no_grad():
        manual = sum(
            torch.rot90(net(torch.rot90(x, r, (2, 3)).flip(3)).flip(3), -r, (2, 3)) + torch.rot90(
                net(torch.rot90(x, r, (2, 3))), -r, (2, 3)) for r in range(4)) / 8
    assert torch.allclose(ens, manual, atol=1e-5)


@pytest.mark.parametrize('bad, error, words', [
    (torch.rand(1, 1, 8, 8), ValueError, '(N, 3, H, W)'),
    (torch.rand(3, 8, 8), ValueError, '(N, 3, H, W)'),
    (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), TypeError, 'torch.float32'),
    (torch.rand(1, 3, 8, 8).double(), TypeError, 'torch.float32'),
    (torch.full((1, 3, 8, 8), float('nan')), ValueError, 'NaN'),
])
def test_bad_input(bad, error, words):
    net = tiny_net()
    with pytest.raises(error, match=None) as info:
        net(bad)
    assert words in str(info.value)
    with pytest.raises(error):
        net.restore(bad)


def test_bad_tiles():
    net = tiny_net()
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match='multiples of 2'):
        net.restore(x, tile_size=15, tile_overlap=4)
    with pytest.raises(ValueError, match='tiles advance'):
        net.restore(x, tile_size=16, tile_overlap=16)
    with pytest.raises(ValueError, match='num_stages'):
        ScaoedNet(num_stages=0)


def test_checkpoint_keys(tmp_path):
    net = tiny_net()
    state = net.state_dict()
    good = tmp_path / 'good.pth'
    torch.save(state, good)  # a bare state dict, as the reference ships
    other = tiny_net(seed=1)
    load_network_weights(other, str(good), param_key=None)
    assert torch.equal(other.state_dict()['RE_Net.Conv.conv.weight'], state['RE_Net.Conv.conv.weight'])

    missing = dict(state)
    missing.pop('RE_Net.tail.0.conv.bias')
    torch.save(missing, tmp_path / 'missing.pth')
    with pytest.raises(CheckpointError, match='1 missing keys.*RE_Net.tail.0.conv.bias'):
        load_network_weights(other, str(tmp_path / 'missing.pth'))

    extra = dict(state, **{'RE_Net.body.1.cat.conv.bias': torch.zeros(8)})
    torch.save({'params': extra}, tmp_path / 'extra.pth')
    with pytest.raises(CheckpointError, match='1 unexpected keys.*RE_Net.body.1.cat.conv.bias'):
        load_network_weights(other, str(tmp_path / 'extra.pth'))

    with pytest.raises(CheckpointError, match='num_feat'):  # a default-size checkpoint into a tiny network
        torch.save(ScaoedNet(num_blocks=1).state_dict(), tmp_path / 'big.pth')
        load_network_weights(other, str(tmp_path / 'big.pth'))


def test_nfae_weights_a_flat_channel_in_half_precision():
    from senm_plugin.archs.scaoednet_blocks import NFAE
    x = torch.rand(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x[:, 1] = 0.5  # a flat channel: zero variance, where only eps keeps the weight defined
    full = NFAE()(x)
    # closed form for the flat channel: both weights sigmoid(0) = 1/2, so it comes out at x / 4
    assert torch.allclose(full[:, 1], torch.full_like(full[:, 1], 0.125))
    half = NFAE()(x.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert torch.allclose(half.float(), full, atol=2e-3)

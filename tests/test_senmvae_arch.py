"""SeNM-VAE networks: sizes, closed-form KL, deterministic sampling, domain-aware training pass."""
import math
import shutil

import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import distributions

from senm_plugin.archs.senmvae_arch import SeNMVAE
from senm_plugin.domains import PAIRED, SOURCE, TARGET
from senm_plugin.archs.senmvae_blocks import (LOGSIGMA_BOUNDS, GaussianHead, append_level, bound_logsigma, gaussian_kl,
                                              gaussian_sample)


pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_net(seed=0):
    torch.manual_seed(seed)
    net = SeNMVAE(num_feat=8, num_latent_layers=[1, 1], zn_dim=4, num_grow_ch=4)
    with torch.no_grad():  # leave the zero init so that every latent changes the output
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_the_old_option_name_num_levels_still_builds_the_same_network_with_a_warning():
    with pytest.warns(FutureWarning, match='num_latent_layers'):
        old = SeNMVAE(num_feat=8, num_levels=[1, 2], zn_dim=4, num_grow_ch=4)
    new = SeNMVAE(num_feat=8, num_latent_layers=[1, 2], zn_dim=4, num_grow_ch=4)
    assert old.num_latent_layers == [1, 2] and old.num_layers == new.num_layers == 4
    assert {k: v.shape for k, v in old.state_dict().items()} == {k: v.shape for k, v in new.state_dict().items()}


def test_reference_sizes():
    net = ARCH_REGISTRY.get('SeNMVAE')(num_feat=64, num_latent_layers=[2, 4], zn_dim=16)
    state = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == 19_955_739
    assert len(state) == 958 and net.num_layers == 7
    assert state['Gauconv_zn_q.6.m.0.net.conv1.weight'].shape == (32, 65, 3, 3)
    assert state['encs_H.2.down.1.weight'].shape == (64, 256, 3, 3)
    assert state['dec.2.up.1.weight'].shape == (64, 16, 3, 3)
    assert state['outconv.2.weight'].shape == (3, 64, 3, 3)
    assert all(float(state[f'proj_z.{i}.weight'].abs().max()) == 0 for i in range(7))
    assert float(state['Gauconv_z_H.0.v.1.weight'].abs().max()) == 0
    assert sum(p.numel() for p in ARCH_REGISTRY.get('NoiseLevelNet')().parameters()) == 2_920_897
    assert sum(p.numel() for p in ARCH_REGISTRY.get('PatchGANDiscriminator')().parameters()) == 2_765_633


def test_small_nets_shapes():
    img = torch.rand(2, 3, 32, 32)
    assert ARCH_REGISTRY.get('NoiseLevelNet')(num_feat=8)(img).shape == (2, 1, 1, 1)
    assert ARCH_REGISTRY.get('PatchGANDiscriminator')(num_feat=8)(img).shape == (2, 1, 2, 2)
    with pytest.raises(ValueError, match='norm must be one of'):
        ARCH_REGISTRY.get('PatchGANDiscriminator')(norm='group')


def test_gaussian_kl_closed_form():
    torch.manual_seed(0)
    mu_q, mu_p, ls_q, ls_p = torch.randn(4, 5, 6).unbind(0)
    expected = distributions.kl_divergence(
        distributions.Normal(mu_q, ls_q.exp()), distributions.Normal(mu_p, ls_p.exp()))
    torch.testing.assert_close(gaussian_kl(mu_q, ls_q, mu_p, ls_p), expected, rtol=1e-5, atol=1e-5)
    assert float(gaussian_kl(mu_q, ls_q, mu_q, ls_q).abs().max()) < 1e-6


def test_kl_cannot_overflow_and_log_sigma_is_bounded():
    ls = torch.tensor([-60., -30., -10., -3., 0., 4., 10., 30.])
    bounded = bound_logsigma(ls)
    lo, hi = LOGSIGMA_BOUNDS
    inside = (ls >= lo) & (ls <= hi)
    assert torch.equal(bounded[inside], ls[inside])  # nothing changes where values were sane
    assert bounded.min() >= lo - 1 and bounded.max() <= hi + 1
    x = torch.tensor([-10.5, -9.5, 10.5], requires_grad=True)
    bound_logsigma(x).sum().backward()
    assert (x.grad > 0).all()  # the ramp keeps a gradient
    # both variances tiny: the ratio-of-exps form gives 0/0; this one the exact closed form
    kl = gaussian_kl(torch.tensor([0.]), torch.tensor([-60.]), torch.tensor([0.]), torch.tensor([-61.]))
    assert torch.isfinite(kl).all()
    assert float(kl) == pytest.approx(-1 - 0.5 + 0.5 * math.exp(2), rel=1e-5)
    # a head whose raw log-sigma ran away still gives a finite KL
    head = GaussianHead(4, 2, 8)
    with torch.no_grad():
        head.v[1].bias.fill_(-80.)
    m, v = head(torch.rand(1, 4, 4, 4))
    assert v.min() >= lo - 1
    assert torch.isfinite(gaussian_kl(m, v, m + 1, v)).all()


def test_sampling_and_level_channel():
    mu, ls = torch.zeros(20000), torch.full((20000, ), 0.5).log()
    torch.manual_seed(0)
    draws = gaussian_sample(mu, ls)
    assert abs(float(draws.std()) - 0.5) < 0.02
    assert torch.equal(gaussian_sample(mu, ls, deterministic=True), mu)
    feat = torch.zeros(2, 3, 4, 4)
    assert torch.equal(append_level(feat, 0.25)[:, 3], torch.full((2, 4, 4), 0.25))
    per_image = append_level(feat, torch.tensor([0.1, 0.2]))[:, 3, 0, 0]
    torch.testing.assert_close(per_image, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match='3 values for a batch of 2'):
        append_level(feat, torch.tensor([0.1, 0.2, 0.3]))


def test_translate_and_denoise():
    net = tiny_net().eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        a = net.translate(x, 0.05, deterministic=True)
        b = net.translate(x, torch.tensor([0.05, 0.05]), deterministic=True)
        c = net.translate(x, torch.tensor([0.05, 0.2]), deterministic=True)
        torch.manual_seed(1)
        s1 = net.translate(x, 0.05)
        torch.manual_seed(1)
        s2 = net.translate(x, 0.05)
        s3 = net.translate(x, 0.05)
        d = net.denoise(x, deterministic=True)
    assert a.shape == x.shape == d.shape
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[0], c[0])
    assert not torch.allclose(a[1], c[1])  # the level channel reaches the output
    torch.testing.assert_close(s1, s2)
    assert not torch.allclose(s1, s3)


def test_channels_last_inference_matches_contiguous():
    """translate/denoise run channels-last on CPU by default: same draws, same outputs, weights left contiguous."""
    net = tiny_net().eval()
    for p in net.parameters():  # non-zero projections, so every latent reaches the output
        p.data.normal_(0, 0.1)
    x = torch.rand(2, 3, 16, 16)
    outs = {}
    with torch.no_grad():
        for layout in (False, True):
            torch.manual_seed(3)
            outs[layout] = (net.translate(x, 0.05, channels_last=layout), net.denoise(x, channels_last=layout))
        torch.manual_seed(3)
        default = net.translate(x, 0.05)
    for a, b in zip(outs[False], outs[True]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        assert b.is_contiguous()
    torch.testing.assert_close(default, outs[True][0], rtol=0, atol=0)
    assert all(p.is_contiguous() for p in net.parameters())
    assert not torch.equal(outs[False][0], net.translate(x, 0.05, deterministic=True).detach())


def masked_reference_pass(net, x, y, level, domain, mix_x, mix_y):
    """Every path for every sample (as the reference does), then per-domain masks: the comparison baseline."""
    acts_h = net._encode(net.inconv_H, net.encs_H, x)
    acts_l = net._encode(net.inconv_L, net.encs_L, y)
    acts_n = net._encode(net.inconv_N, net.encs_N, y)
    paired, source = (domain == PAIRED).float(), (domain == SOURCE).float()
    target = (domain == TARGET).float()

    def pick(hm, lm, mix):
        w = lambda v: v.view(-1, 1, 1, 1)  # noqa: E731
        return hm * w(paired * mix + source) + lm * w(paired * (1 - mix) + target)

    outs, kl_z = [], 0
    for use_zn, mix in ((False, mix_x), (True, mix_y)):
        dec, kl_zn = 0, 0
        for i in reversed(range(net.num_layers)):
            hm, hv = net.Gauconv_z_H[i](dec + acts_h[i])
            lm, lv = net.Gauconv_z_L[i](dec + acts_l[i])
            kl_z = kl_z + gaussian_kl(lm, lv, hm, hv).mean(dim=(1, 2, 3))
            dec = dec + net.proj_z[i](pick(hm, lm, mix))
            if use_zn:
                qm, qv = net.Gauconv_zn_q[i](append_level(dec + acts_n[i], level))
                pm, pv = net.Gauconv_zn_p[i](append_level(dec, level))
                kl_zn = kl_zn + gaussian_kl(qm, qv, pm, pv).mean(dim=(1, 2, 3))
                dec = dec + net.proj_zn[i](qm)
            dec = net.dec[i](dec)
        outs.append(net.outconv(dec))
    mask_x, mask_y = (paired + source).bool(), (paired + target).bool()
    terms = [((outs[0] - x)**2).mean(dim=(1, 2, 3))[mask_x], ((outs[1] - y)**2).mean(dim=(1, 2, 3))[mask_y],
             kl_zn[mask_y], kl_z[paired.bool()]]
    return [t.mean() for t in terms]


def split_pass_terms(net, x, y, level, domain, mix_x, mix_y):
    out = net(x, y, level, domain, mix_x=mix_x, mix_y=mix_y, deterministic=True)
    return [((out['x_hat'] - x[out['x_idx']])**2).mean(dim=(1, 2, 3)).mean(),
            ((out['y_hat'] - y[out['y_idx']])**2).mean(dim=(1, 2, 3)).mean(),
            out['kl_zn'].mean(), out['kl_z'].mean()]


def test_domain_split_equals_masked_computation():
    net = tiny_net()
    torch.manual_seed(3)
    x = torch.rand(6, 3, 8, 8)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    level = torch.rand(6) * 0.1
    domain = torch.tensor([PAIRED, SOURCE, TARGET, PAIRED, TARGET, SOURCE])
    mix_x, mix_y = torch.tensor([1., 0, 0, 0, 1, 1]), torch.tensor([0., 1, 1, 1, 0, 0])
    results = []
    for fn in (split_pass_terms, masked_reference_pass):
        net.zero_grad()
        terms = fn(net, x, y, level, domain, mix_x, mix_y)
        sum(w * t for w, t in zip((1, 1, 0.5, 0.3), terms)).backward()
        results.append((terms, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}))
    (terms_a, grads_a), (terms_b, grads_b) = results
    for a, b in zip(terms_a, terms_b):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for name, grad in grads_b.items():  # the masked pass has zero gradients where the split pass has none
        torch.testing.assert_close(grads_a.get(name, torch.zeros_like(grad)), grad, rtol=1e-4, atol=1e-7)


def grads_after(net, domain):
    net.zero_grad(set_to_none=True)
    x = torch.rand(len(domain), 3, 8, 8)
    out = net(x, x.clone(), torch.full((len(domain), ), 0.05), torch.tensor(domain))
    loss = sum(v.float().sum() for k, v in out.items() if not k.endswith('idx'))
    loss.backward()
    return {name for name, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_gradient_isolation_per_domain():
    net = tiny_net()
    source = grads_after(net, [SOURCE, SOURCE])
    assert any(n.startswith('encs_H') for n in source) and any(n.startswith('Gauconv_z_H') for n in source)
    for prefix in ('inconv_L', 'encs_L', 'inconv_N', 'encs_N', 'Gauconv_zn_', 'Gauconv_z_L', 'proj_zn'):
        assert not any(n.startswith(prefix) for n in source), prefix
    target = grads_after(net, [TARGET, TARGET])
    assert any(n.startswith('encs_N') for n in target) and any(n.startswith('Gauconv_zn_p') for n in target)
    for prefix in ('inconv_H', 'encs_H', 'Gauconv_z_H'):
        assert not any(n.startswith(prefix) for n in target), prefix
    paired = grads_after(net, [PAIRED, PAIRED])
    assert any(n.startswith('encs_H') for n in paired) and any(n.startswith('encs_N') for n in paired)


def test_bad_domain_label():
    net = tiny_net()
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match='domain labels'):
        net(x, x, torch.zeros(2), torch.tensor([0, 5]))


@pytest.mark.skipif(shutil.which('c++') is None and shutil.which('g++') is None, reason='no C++ compiler')
def test_winograd_training_pass_matches_direct(monkeypatch):
    """On CPU the training pass runs its 3x3 convolutions through the Winograd kernel, forward and backward."""
    from senm_plugin.ops import winograd
    assert winograd.load_kernel() is not None, winograd.kernel_error()
    monkeypatch.setattr(winograd, 'MIN_CHANNELS', 1)  # the tiny net's convolutions are narrower than the default
    calls = []
    apply = winograd.WinogradConv3x3.apply
    monkeypatch.setattr(winograd.WinogradConv3x3, 'apply', lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(3)
    x = torch.rand(3, 3, 12, 12)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    results = []
    for use_winograd in (False, True):
        net = tiny_net()
        net.winograd = use_winograd
        before = len(calls)
        torch.manual_seed(5)
        out = net(x, y, torch.full((3, ), 0.05), torch.tensor([PAIRED, SOURCE, TARGET]))
        loss = (out['x_hat'] - x[out['x_idx']]).abs().mean() + (out['y_hat'] - y[out['y_idx']]).abs().mean() + \
            out['kl_zn'].mean() + out['kl_z'].mean()
        loss.backward()
        results.append((out['x_hat'], loss, {n: p.grad for n, p in net.named_parameters() if p.grad is not None}))
        assert (len(calls) > before) == use_winograd
    (x_a, loss_a, grads_a), (x_b, loss_b, grads_b) = results
    assert x_b.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x_a, x_b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-7)
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-3, atol=1e-6, msg=name)

"""LPIPS and relativistic GAN losses: offline behaviour, weight loading, formulas and gradients."""
import pytest
import torch
import torch.nn.functional as F

import senm_plugin  # noqa: F401  (registers losses; must precede basicsr imports)
from basicsr.losses import build_loss
from senm_plugin.checkpoint import CheckpointError
from senm_plugin.losses.gan_loss import RelativisticGANLoss
from senm_plugin.losses.lpips_loss import LPIPSLoss, LPIPSWeightsNotFoundError


@pytest.fixture(scope='module')
def random_lpips():
    torch.manual_seed(0)
    return LPIPSLoss(loss_weight=0.5, random_backbone=True)


# ---------------------------------------------------------------- LPIPS
def test_lpips_offline_without_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'th'))
    with pytest.raises(LPIPSWeightsNotFoundError) as err:
        build_loss({'type': 'LPIPSLoss'})
    msg = str(err.value)
    assert 'alexnet-owt-7be5be79.pth' in msg and 'pretrained_path' in msg
    assert str(tmp_path / 'th' / 'hub' / 'checkpoints') in msg
    with pytest.raises(LPIPSWeightsNotFoundError, match='nowhere.pth, which does not exist'):
        LPIPSLoss(pretrained_path=str(tmp_path / 'nowhere.pth'))


def test_lpips_random_backbone_forward_backward(random_lpips):
    x = torch.rand(2, 3, 32, 32)
    y = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = random_lpips(y, x)
    assert loss.ndim == 0 and loss.item() > 0
    loss.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in random_lpips.parameters())
    assert random_lpips(x, x).item() == pytest.approx(0.0, abs=1e-6)
    random_lpips.train()
    assert not random_lpips.lpips.training
    # [0, 1] inputs are mapped to [-1, 1]; loss_weight 0.5 scales the raw LPIPS value
    raw = random_lpips.lpips(2 * y - 1, 2 * x - 1).mean()
    assert loss.item() == pytest.approx(0.5 * raw.item(), rel=1e-5)
    per_image = LPIPSLoss(random_backbone=True, reduction='none')(torch.rand(3, 1, 32, 32), torch.rand(3, 1, 32, 32))
    assert per_image.shape == (3, )


def test_lpips_loads_local_alexnet_file(tmp_path):
    from torchvision.models import alexnet

    torch.manual_seed(1)
    features = {f'features.{k}': v for k, v in alexnet(weights=None).features.state_dict().items()}
    path = tmp_path / 'alexnet-owt-7be5be79.pth'
    torch.save(features, path)
    loss = build_loss({'type': 'LPIPSLoss', 'pretrained_path': str(path), 'loss_weight': 0.01})
    assert torch.equal(getattr(loss.lpips.net.slice1, '0').weight, features['features.0.weight'])
    assert torch.equal(getattr(loss.lpips.net.slice5, '10').bias, features['features.10.bias'])
    assert loss.loss_weight == 0.01

    torch.save({'features.0.weight': torch.zeros(3)}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match='not a torchvision AlexNet'):
        LPIPSLoss(pretrained_path=str(tmp_path / 'bad.pth'))


def test_lpips_ships_linear_weights(random_lpips):
    import os

    import lpips
    assert os.path.isfile(os.path.join(os.path.dirname(lpips.__file__), 'weights', 'v0.1', 'alex.pth'))
    # linear layers are the calibrated ones, not a random init: all weights non-negative in LPIPS v0.1
    assert all((lin.model[-1].weight >= 0).all() for lin in random_lpips.lpips.lins)


# ---------------------------------------------------------------- RaGAN
def _bce(x, target):
    return F.softplus(-x).mean() if target else F.softplus(x).mean()


def test_ragan_matches_formula_and_registry():
    torch.manual_seed(0)
    real = torch.randn(4, 1, 6, 6)
    fake = torch.randn(4, 1, 6, 6)
    crit = build_loss({'type': 'RelativisticGANLoss', 'loss_weight': 0.1})
    assert isinstance(crit, RelativisticGANLoss)
    g = 0.1 * (_bce(real - fake.mean(), False) + _bce(fake - real.mean(), True)) / 2
    d = (_bce(real - fake.mean(), True) + _bce(fake - real.mean(), False)) / 2
    assert crit(real, fake, is_disc=False).item() == pytest.approx(g.item(), rel=1e-6)
    assert crit(real, fake, is_disc=True).item() == pytest.approx(d.item(), rel=1e-6)


def test_ragan_gradients():
    real = torch.randn(3, 1, 4, 4, requires_grad=True)
    fake = torch.randn(3, 1, 4, 4, requires_grad=True)
    crit = RelativisticGANLoss(loss_weight=1.0)
    crit(real, fake).backward()
    assert real.grad is None and fake.grad.abs().sum() > 0  # generator: real branch detached
    crit(real, fake, is_disc=True).backward()
    assert real.grad.abs().sum() > 0
    # the generator wants fake to look more real: the gradient on fake logits is negative on average
    fake2 = fake.detach().clone().requires_grad_(True)
    crit(real.detach(), fake2).backward()
    assert fake2.grad.sum() < 0

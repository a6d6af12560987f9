"""``basicsr export onnx``: ScaoedNet and SeNM-VAE translate graphs with dynamic sizes, checked with onnxruntime."""
import numpy as np
import pytest
import torch

from helpers import TINY_SENMVAE_OPT, save_tiny_senmvae
from senm_plugin.archs.scaoednet_arch import ScaoedNet
from senm_plugin.checkpoint import atomic_save
from senm_plugin.tools.export import main, run_onnx

ort = pytest.importorskip('onnxruntime')
TINY_SCAOEDNET = {'num_feat': 16, 'num_stages': 2, 'num_blocks': 1}
pytestmark = pytest.mark.usefixtures('one_thread')


def test_scaoednet_export_matches_pytorch_at_any_size(tmp_path, capsys):
    torch.manual_seed(0)
    net = ScaoedNet(**TINY_SCAOEDNET).eval()
    atomic_save({'params': net.state_dict()}, str(tmp_path / 'den.safetensors'))
    out = tmp_path / 'den.onnx'
    code = main(['onnx', '--model', str(tmp_path / 'den.safetensors'), '--arch', 'ScaoedNet', '--network-opt',
                 '{"num_feat": 16, "num_stages": 2, "num_blocks": 1}', '--out', str(out), '--size', '32'])
    text = capsys.readouterr().out
    assert code == 0 and 'max abs diff' in text
    assert float(text.split('max abs diff ')[1].split()[0]) < 1e-4
    x = torch.rand(3, 3, 47, 39)  # batch, odd height and width: none of them traced
    with torch.no_grad():
        ref = net(x).numpy()
    got = run_onnx(str(out), {'noisy': x})
    assert got.shape == (3, 3, 47, 39) and np.abs(got - ref).max() < 1e-4


def test_senmvae_translate_export_samples_noise_at_each_level(tmp_path, capsys):
    model, _, _ = save_tiny_senmvae(str(tmp_path / 'models'))
    out = tmp_path / 'noise.onnx'
    opt = '{"num_feat": %d, "num_latent_layers": [1, 1], "zn_dim": %d, "num_grow_ch": %d}' % (
        TINY_SENMVAE_OPT['num_feat'], TINY_SENMVAE_OPT['zn_dim'], TINY_SENMVAE_OPT['num_grow_ch'])
    code = main(['onnx', '--model', model, '--arch', 'SeNMVAE-translate', '--network-opt', opt, '--residual', 'level',
                 '--out', str(out), '--size', '32'])
    assert code == 0 and '(latents at their means)' in capsys.readouterr().out
    assert not list(tmp_path.glob('*.check.onnx'))
    clean = torch.rand(2, 3, 30, 42)
    levels = torch.tensor([0.02, 0.08])
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    first, second = (session.run(None, {'clean': clean.numpy(), 'level': levels.numpy()})[0] for _ in range(2))
    noise = torch.from_numpy(first) - clean
    assert first.shape == (2, 3, 30, 42) and not np.array_equal(first, second)  # new draws on every run
    # --residual level: each image's noise has the std of its level (measured before the crop back to 30x42)
    np.testing.assert_allclose(noise.flatten(1).std(dim=1).numpy(), levels.numpy(), rtol=0.15)


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(['onnx', '--model', str(tmp_path / 'none.pth'), '--arch', 'ScaoedNet', '--out',
                 str(tmp_path / 'x.onnx')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('basicsr export onnx: error:') and 'none.pth not found' in err and 'Traceback' not in err
    torch.manual_seed(0)
    atomic_save({'params': ScaoedNet(**TINY_SCAOEDNET).state_dict()}, str(tmp_path / 'den.pth'))
    assert main(['onnx', '--model', str(tmp_path / 'den.pth'), '--arch', 'ScaoedNet', '--out',
                 str(tmp_path / 'x.onnx')]) == 1  # paper-size options for a tiny checkpoint
    assert 'does not match ScaoedNet' in capsys.readouterr().err

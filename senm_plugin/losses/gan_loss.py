"""Relativistic average GAN loss (RaGAN with BCE on logits), as SeNM-VAE trains its noisy reconstructions."""
from torch import nn as nn

from basicsr.losses.gan_loss import GANLoss
from basicsr.utils.registry import LOSS_REGISTRY


@LOSS_REGISTRY.register()
class RelativisticGANLoss(nn.Module):
    """RaGAN loss: BCE-with-logits on D(real) - mean D(fake) and D(fake) - mean D(real).

    The SeNM-VAE reference (``SIDD/models/model_senmvae.py``, ``GANLoss('ragan')``) uses, with C = logits:
        generator:     w * [BCE(C_r - mean C_f, 0) + BCE(C_f - mean C_r, 1)] / 2   (C_r detached)
        discriminator:     [BCE(C_r - mean C_f, 1) + BCE(C_f - mean C_r, 0)] / 2
    where the means run over the whole batch and all patch positions. BasicSR's ESRGAN model builds the same
    terms from its 'vanilla' GANLoss, which this class reuses; BasicSR has no relativistic type of its own.

    Args:
        loss_weight (float): weight w of the generator loss (the discriminator loss is never weighted, as in
            BasicSR). Default: 1.0; the reference uses 0.1 (``D_lossfn_weight``).
        real_label_val (float): target for real. Default: 1.0.
        fake_label_val (float): target for fake. Default: 0.0.
    """

    def __init__(self, loss_weight=1.0, real_label_val=1.0, fake_label_val=0.0):
        super().__init__()
        self.loss_weight = loss_weight
        self.bce = GANLoss('vanilla', real_label_val, fake_label_val, loss_weight=1.0)

    def forward(self, pred_real, pred_fake, is_disc=False):
        """Loss from discriminator logits on real and fake images.

        Args:
            pred_real (Tensor): D(real). For the generator it is detached here, so only the fake branch carries
                gradient, as in the reference.
            pred_fake (Tensor): D(fake); for the discriminator step the caller passes D(fake.detach()).
            is_disc (bool): discriminator loss if True, else the weighted generator loss.
        """
        if is_disc:
            l_real = self.bce(pred_real - pred_fake.mean(), True, is_disc=True)
            l_fake = self.bce(pred_fake - pred_real.mean(), False, is_disc=True)
            return (l_real + l_fake) / 2
        pred_real = pred_real.detach()
        l_real = self.bce(pred_real - pred_fake.mean(), False, is_disc=False)
        l_fake = self.bce(pred_fake - pred_real.mean(), True, is_disc=False)
        return self.loss_weight * (l_real + l_fake) / 2

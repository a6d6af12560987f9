"""Building blocks of ScaoedNet (NeurIPS 2022): DE networks, NFAE layer, FMMA blocks and the RE network.

Attribute names follow the reference implementation (``chaoren88/ScaoedNet``, class ``DN``) so that its checkpoints
load with ``strict=True``; the comments map them to the poster's symbols.
"""
import torch
from torch import nn as nn
from torch.nn import functional as F


class ConvLayer(nn.Module):
    """A 'same'-padded convolution with an optional ReLU; the conv sits under ``.conv`` as in the reference."""

    def __init__(self, in_ch, out_ch, kernel_size, relu=False):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
        self.relu = relu

    def forward(self, x):
        x = self.conv(x)
        return F.relu(x, inplace=True) if self.relu else x


def conv_stack(num_feat, num_convs, last_relu):
    """``num_convs`` 3x3 ``num_feat``-channel ConvLayers with ReLU after all but (optionally) the last."""
    return nn.Sequential(*[
        ConvLayer(num_feat, num_feat, 3, relu=(i < num_convs - 1 or last_relu)) for i in range(num_convs)])


def _spatial_mean(x):
    return x.mean(dim=(2, 3), keepdim=True)


def _spatial_max(x):
    return x.amax(dim=(2, 3), keepdim=True)


class NFAE(nn.Module):
    """Noise-feature adaptive enhancement: weights each activation by how far it stands out of its own variance.

    weight = sigmoid(10 v / mean_hw(v)) * sigmoid(10 v / mean_c(v)) with v = (x - mean_hw(x))^2.
    """

    eps = 1e-16

    def forward(self, x):
        # the variances in float32 (a no-op for float32 input): in half precision eps rounds to 0 and a flat channel
        # gives 0/0
        x32 = x.float()
        var = (x32 - _spatial_mean(x32)).pow(2)
        weight_spatial = torch.sigmoid(10 * var / (_spatial_mean(var) + self.eps))
        weight_channel = torch.sigmoid(10 * var / (var.mean(dim=1, keepdim=True) + self.eps))
        return x * (weight_spatial * weight_channel).to(x.dtype)


class InitialDENet(nn.Module):
    """u_ini-Net (U_ini): the first noise map u^(0) and the noise feature Q from the noisy image y."""

    def __init__(self, num_in_ch=3, num_feat=64):
        super().__init__()
        self.ConvNet = nn.Sequential(
            ConvLayer(num_in_ch * 4, num_feat, 3, relu=True), *conv_stack(num_feat, 3, last_relu=True))
        self.att = NFAE()
        self.conv1 = ConvLayer(num_feat, 4, 3)

    def forward(self, y):
        q = self.att(self.ConvNet(F.pixel_unshuffle(y, 2)))
        return F.pixel_shuffle(self.conv1(q), 2), q


class DENet(nn.Module):
    """u-Net (U): the noise-map correction U(z^(i+1), y, u^(i)) of Eq. (2); y enters through the feature Q."""

    def __init__(self, num_feat=64):
        super().__init__()
        self.head_noisy = ConvLayer(4, num_feat, 3)
        self.head_Q = ConvLayer(num_feat, num_feat, 3)
        self.ConvNet_Input = nn.Sequential(
            ConvLayer(num_feat * 2, num_feat, 1), *conv_stack(num_feat, 4, last_relu=True))
        self.ConvNet_f0noise = nn.Sequential(ConvLayer(num_feat * 2, num_feat, 1))
        self.att = NFAE()
        self.conv1 = ConvLayer(num_feat, 4, 3)

    def forward(self, u, q, z, q_head=None):
        """Returns the update of u. ``q_head`` = ``head_Q(q)`` may be passed in when it is reused across stages."""
        if q_head is None:
            q_head = self.head_Q(q)
        u_feat = self.head_noisy(F.pixel_unshuffle(u, 2))
        qz = self.ConvNet_f0noise(torch.cat((q_head, z), dim=1))
        feat = self.ConvNet_Input(torch.cat((u_feat, qz), dim=1))
        return F.pixel_shuffle(self.conv1(self.att(feat)), 2)


class InplaceSA(nn.Module):
    """Spatially re-weighted input, pooled to per-channel (mean, max) descriptors of shape (n, c, 2)."""

    def __init__(self, num_feat):
        super().__init__()
        self.Conv = ConvLayer(num_feat, 1, 3)

    def forward(self, x):
        x = x * torch.sigmoid(self.Conv(x))
        return torch.cat((x.mean(dim=(2, 3)).unsqueeze(2), x.amax(dim=(2, 3)).unsqueeze(2)), dim=2)


class CIGChannelAttention(nn.Module):
    """CIG channel attention (the reference's ``CIG_CA``): per-channel weights from four pooled descriptors.

    The descriptors (mean, max, and both again after an in-place spatial attention) go through a shared
    C -> 4 -> C bottleneck and are mixed into one weight per channel by a 1x1 conv and a sigmoid.
    """

    def __init__(self, num_feat):
        super().__init__()
        self.inplaceSA = InplaceSA(num_feat)
        self.cat = nn.Sequential(ConvLayer(num_feat, 4, 1, relu=True), ConvLayer(4, num_feat, 1))
        self.conv_du = nn.Sequential(ConvLayer(4, 1, 1), nn.Sigmoid())

    def weight(self, x):
        """The (n, c, 1, 1) channel weights."""
        pooled = torch.cat((x.mean(dim=(2, 3)).unsqueeze(2), x.amax(dim=(2, 3)).unsqueeze(2)), dim=2)
        desc = torch.cat((pooled, self.inplaceSA(x)), dim=2).unsqueeze(3)  # (n, c, 4, 1)
        desc = self.cat(desc)  # the bottleneck runs on the channel axis; the 4 descriptors are the 'height'
        return self.conv_du(desc.transpose(1, 2)).transpose(1, 2)

    def forward(self, x):
        return x * self.weight(x)


class ChannelPool2D(nn.Module):
    """Per-pixel channel mean, channel max and a learned 2-channel projection: (n, 4, h, w)."""

    def __init__(self, num_feat):
        super().__init__()
        self.Conv = ConvLayer(num_feat, 2, 1)

    def forward(self, x):
        return torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True), self.Conv(x)), dim=1)


class InplaceCA(nn.Module):
    """x + x * sigmoid(1x1 conv of the global mean): a residual channel attention on the 4 pooled maps."""

    def __init__(self):
        super().__init__()
        self.Conv = ConvLayer(4, 4, 1)

    def forward(self, x):
        return x + x * torch.sigmoid(self.Conv(_spatial_mean(x)))


class CIGSpatialAttention(nn.Module):
    """CIG spatial attention (the reference's ``CIG_SA``): one weight per pixel from channel-pooled maps."""

    def __init__(self, num_feat):
        super().__init__()
        self.compress = ChannelPool2D(num_feat)
        self.inplaceCA = InplaceCA()
        # the reference registers the same InplaceCA module twice, so it appears under both keys
        self.conv_du = nn.Sequential(ConvLayer(4, 4, 3), self.inplaceCA, ConvLayer(4, 1, 1), nn.Sigmoid())

    def weight(self, x):
        """The (n, 1, h, w) spatial weights."""
        return self.conv_du(self.compress(x))

    def forward(self, x):
        return x * self.weight(x)


class FMMA(nn.Module):
    """Feature multiple-modulation attention block (FM2ARB): FSM (CIG CA + CIG SA) and DEM guided by g."""

    def __init__(self, num_feat):
        super().__init__()
        self.head = conv_stack(num_feat, 4, last_relu=False)
        self.DEM = nn.Sequential(ConvLayer(num_feat, num_feat, 1, relu=True), ConvLayer(num_feat, num_feat, 1),
                                 nn.Sigmoid())
        self.CIG_CA = CIGChannelAttention(num_feat)
        self.CIG_SA = CIGSpatialAttention(num_feat)
        self.cat = ConvLayer(num_feat * 2, num_feat, 1)

    def forward(self, x, g):
        feat = self.head(x)
        dem = self.DEM(g)
        if torch.is_grad_enabled() or torch.jit.is_tracing():  # the per-image fast path below is not batch-agnostic
            mixed = self.cat(torch.cat((self.CIG_CA(feat), self.CIG_SA(feat)), dim=1))
            return mixed * dem + x
        return torch.addcmul(x, self._fsm_no_cat(feat), dem)

    def _fsm_no_cat(self, feat):
        """``cat(cat(CA(f), SA(f)))`` without building the concatenation (same sums, fewer memory passes).

        With W = [W1 W2]: W1 (f * w_ca) + W2 (f * w_sa) + bias = (W1 diag(w_ca)) f + w_sa * (W2 f) + bias.
        """
        w_ca, w_sa = self.CIG_CA.weight(feat), self.CIG_SA.weight(feat)
        c = feat.shape[1]
        weight, bias = self.cat.conv.weight, self.cat.conv.bias
        # W1 diag(w_ca) differs per image
        ca = [F.conv2d(f, weight[:, :c] * w, bias) for f, w in zip(feat.split(1), w_ca.split(1))]
        return torch.addcmul(ca[0] if len(ca) == 1 else torch.cat(ca), w_sa, F.conv2d(feat, weight[:, c:]))


class RENet(nn.Module):
    """z-Net (Z) with the G-module: z^(i+1) = Z(z^(i), y, g^(i), u^(i)) of Eq. (2), in the LS-encoded domain."""

    def __init__(self, num_feat=64, num_blocks=16):
        super().__init__()
        self.head_E = ConvLayer(num_feat, num_feat, 3)
        self.head_noisy = ConvLayer(4, num_feat, 3)
        self.head_z = ConvLayer(num_feat, num_feat, 3)
        self.GR = conv_stack(num_feat, 4, last_relu=False)  # the G-module: g = G(u)
        fuse = ConvLayer(num_feat * 2, num_feat, 1)
        # one conv used twice and stored under both keys, as in the reference
        self.fusion = nn.Sequential(fuse)
        self.y_u_cat = nn.Sequential(fuse)
        self.body = nn.ModuleList([FMMA(num_feat) for _ in range(num_blocks)])
        self.Conv = ConvLayer(num_feat, num_feat, 3)
        self.DEM = nn.Sequential(
            ConvLayer(num_feat, num_feat, 3, relu=True), ConvLayer(num_feat, num_feat, 3), nn.Sigmoid())
        self.tail = nn.Sequential(ConvLayer(num_feat, num_feat, 3))

    def forward(self, z, e, u, e_head=None):
        """``e`` is the LS encoding E(y); ``e_head`` = ``head_E(e)`` may be passed in when reused across stages."""
        if e_head is None:
            e_head = self.head_E(e)
        z = self.head_z(z)
        u = self.head_noisy(F.pixel_unshuffle(u, 2))
        feat = self.fusion(torch.cat((z, self.y_u_cat(torch.cat((e_head, u), dim=1))), dim=1))
        g = self.GR(u)
        for block in self.body:
            feat = block(feat, g)
        return self.tail(self.Conv(feat) * self.DEM(g) + z)

"""DGCNN dilated gated convolutions (https://kexue.fm/archives/5409): gate limits, padding, receptive field."""
import pytest
import torch
import torch.nn.functional as F

from kexue.nn.dgcnn import DGCNN, DGCNNBlock, DilatedGatedConv1d


def _force_gate(block, value):
    C = block.out_channels
    with torch.no_grad():
        block.conv.weight[C:] = 0
        block.conv.bias[C:] = value


def _conv_branch(block, x, mask):
    xm = x * mask[..., None]
    return block.conv(xm.transpose(1, 2)).transpose(1, 2)[..., :block.out_channels]


def test_gate_limits():
    torch.manual_seed(0)
    x, mask = torch.randn(2, 9, 4), torch.arange(9) < torch.tensor([[9], [5]])
    m = mask[..., None].float()
    block = DilatedGatedConv1d(4, dilation=2, gate_dropout=None).eval()
    _force_gate(block, -1e4)                                       # sigma = 0: masked input passes unchanged
    torch.testing.assert_close(block(x, mask), x * m)
    _force_gate(block, 1e4)                                        # sigma = 1: the conv branch
    torch.testing.assert_close(block(x, mask), _conv_branch(block, x, mask) * m)
    plain = DilatedGatedConv1d(4, residual=False, gate_dropout=None)
    _force_gate(plain, 1e4)
    torch.testing.assert_close(plain(x, mask), _conv_branch(plain, x, mask) * m)
    wide = DGCNNBlock(4, out_channels=6, gate_dropout=None)       # 1x1 residual projection when widths differ
    _force_gate(wide, -1e4)
    torch.testing.assert_close(wide(x, mask), wide.res_proj(x.transpose(1, 2)).transpose(1, 2) * m * m)


def test_padding_invariance_near_the_end_with_dilation_16():
    torch.manual_seed(0)
    net = DGCNN(8, dilations=(1, 2, 4, 8, 16, 1)).eval()
    x = torch.randn(1, 40, 8)
    mask = torch.arange(40)[None] < 30
    noisy = x.clone()
    noisy[:, 30:] = 1e3 * torch.randn(1, 10, 8)
    out, out_noisy = net(x, mask), net(noisy, mask)
    torch.testing.assert_close(out_noisy, out)
    assert (out_noisy[:, 30:] == 0).all()
    torch.testing.assert_close(out[:, :30], net(x[:, :30], mask[:, :30]))   # same as the unpadded sequence


def test_receptive_field_by_autograd():
    net = DGCNN(3, gate_dropout=None).double()
    assert net.receptive_field() == 65
    x = torch.randn(1, 101, 3, dtype=torch.float64, requires_grad=True)
    g, = torch.autograd.grad(net(x)[0, 50].sum(), x)
    reach = (g[0].abs().sum(-1) > 0).nonzero()[:, 0]
    assert reach.min().item() == 50 - 32 and reach.max().item() == 50 + 32
    assert DGCNN(3, dilations=(1,) * 6).receptive_field() == 13


def test_same_padding_equals_explicit_symmetric_padding():
    block = DilatedGatedConv1d(4, dilation=5, gate_dropout=None)
    x = torch.randn(2, 4, 23)
    explicit = F.conv1d(F.pad(x, (5, 5)), block.conv.weight, block.conv.bias, dilation=5)
    torch.testing.assert_close(block.conv(x), explicit)


def test_gate_dropout_acts_on_the_gate_in_training_only():
    torch.manual_seed(0)
    block = DilatedGatedConv1d(4, gate_dropout=0.5)
    x = torch.randn(2, 7, 4)
    block.eval()
    assert torch.equal(block(x), block(x))
    block.train()
    assert not torch.equal(block(x), block(x))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="kernel_size"):
        DilatedGatedConv1d(4, kernel_size=2)
    with pytest.raises(ValueError, match="channels=4"):
        DilatedGatedConv1d(4)(torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="mask"):
        DilatedGatedConv1d(4)(torch.randn(1, 3, 4), torch.ones(1, 4, dtype=torch.bool))

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


def test_empty_sequence_and_empty_batch_give_empty_outputs():
    """n = 0 failed inside conv1d ("Kernel size can't be greater than actual input size"); an empty sequence
    has an empty output of the right width, as every other masked layer here."""
    for block in (DilatedGatedConv1d(4, 6, dilation=2), DGCNN(4, gate_dropout=None)):
        width = 6 if isinstance(block, DilatedGatedConv1d) else 4
        for B, n in ((2, 0), (0, 5)):
            x = torch.zeros(B, n, 4, requires_grad=True)
            y = block(x, torch.ones(B, n, dtype=torch.bool))
            assert y.shape == (B, n, width)
            y.sum().backward()


@pytest.mark.parametrize("kw, exc, name", [
    (dict(channels=0), ValueError, "channels"), (dict(channels=4.0), TypeError, "channels"),
    (dict(out_channels=-2), ValueError, "out_channels"), (dict(out_channels=0), ValueError, "out_channels"),
    (dict(kernel_size=2), ValueError, "kernel_size"), (dict(dilation=0), ValueError, "dilation"),
    (dict(gate_dropout=float("nan")), ValueError, "gate_dropout"), (dict(residual="no"), TypeError, "residual"),
])
def test_block_arguments_checked_by_name(kw, exc, name):
    with pytest.raises(exc, match=name):
        DilatedGatedConv1d(**{"channels": 4, **kw})


@pytest.mark.parametrize("kw, exc, name", [
    (dict(channels=0), ValueError, "channels"), (dict(dilations=(1, 0)), ValueError, "dilation"),
    (dict(dilations=()), ValueError, "dilations"), (dict(dilations=(1, 2.0)), TypeError, "dilation"),
])
def test_stack_arguments_checked_by_name(kw, exc, name):
    with pytest.raises(exc, match=name):
        DGCNN(**{"channels": 4, **kw})


def test_mask_values_other_than_01_refused():
    with pytest.raises(ValueError, match="mask"):
        DGCNN(4)(torch.zeros(1, 3, 4), torch.tensor([[1.0, 0.5, 0.0]]))

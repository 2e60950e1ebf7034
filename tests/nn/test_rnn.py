"""Custom RNNs (https://kexue.fm/archives/5643) and MaskedBiRNN (https://kexue.fm/archives/6810)."""
import pytest
import torch

from kexue.nn.rnn import MaskedBiRNN, SimpleRNNCell, unroll

def test_unroll_equals_python_loop_and_simple_cell_equals_torch_rnn():
    torch.manual_seed(0)
    cell = SimpleRNNCell(3, 5)
    x = torch.randn(2, 6, 3)
    last, outs, (state,) = unroll(cell, x, [torch.zeros(2, 5)])
    y, loop = torch.zeros(2, 5), []
    for t in range(6):
        y = torch.tanh(cell.w_rec(y) + cell.w_in(x[:, t]))
        loop.append(y)
    torch.testing.assert_close(outs, torch.stack(loop, 1))
    torch.testing.assert_close(last, state)
    ref = torch.nn.RNN(3, 5, nonlinearity="tanh", batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(cell.w_in.weight)
        ref.bias_ih_l0.copy_(cell.w_in.bias)
        ref.weight_hh_l0.copy_(cell.w_rec.weight)
        ref.bias_hh_l0.zero_()
    torch.testing.assert_close(outs, ref(x)[0])
    mask = torch.arange(6) < torch.tensor([[6], [3]])             # masked steps carry state (Keras K.rnn)
    _, mouts, (mstate,) = unroll(cell, x, [torch.zeros(2, 5)], mask=mask)
    torch.testing.assert_close(mstate[1], outs[1, 2])
    torch.testing.assert_close(mouts[1, 3:], outs[1, 2].expand(3, 5))


@pytest.mark.parametrize("kind", [torch.nn.LSTM, torch.nn.GRU])
def test_masked_birnn_equals_each_sequence_alone(kind):
    torch.manual_seed(0)
    birnn = MaskedBiRNN(kind(4, 3, bidirectional=True, batch_first=True))
    x = torch.randn(3, 7, 4)
    lengths = [7, 4, 1]
    mask = torch.arange(7) < torch.tensor(lengths)[:, None]
    out, _ = birnn(x, mask)
    for b, L in enumerate(lengths):
        alone, _ = birnn.rnn(x[b:b + 1, :L])
        torch.testing.assert_close(out[b, :L], alone[0])
        assert (out[b, L:] == 0).all()
    with pytest.raises(ValueError, match="bidirectional"):
        MaskedBiRNN(torch.nn.LSTM(4, 3, batch_first=True))
    with pytest.raises(ValueError, match="right-padding"):
        birnn(x, mask.flip(1))


def test_masked_birnn_empty_batch_like_the_rnn_itself():
    rnn = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    out, (h, c) = MaskedBiRNN(rnn)(torch.zeros(0, 2, 3), torch.zeros(0, 2, dtype=torch.bool))
    assert out.shape == (0, 2, 8) and h.shape == (2, 0, 4)


def test_masks_other_than_01_are_refused():
    """A 0.5 in a mask was read as a real token (bool()) by MaskedBiRNN; unroll failed inside torch.where."""
    rnn = torch.nn.GRU(3, 4, batch_first=True, bidirectional=True)
    with pytest.raises(ValueError, match="mask"):
        MaskedBiRNN(rnn)(torch.zeros(1, 2, 3), torch.tensor([[1.0, 0.5]]))
    with pytest.raises(ValueError, match="mask"):
        unroll(SimpleRNNCell(3, 4), torch.zeros(1, 2, 3), [torch.zeros(1, 4)], mask=torch.tensor([[1.0, 0.5]]))
    y, _, _ = unroll(SimpleRNNCell(3, 4), torch.ones(1, 2, 3), [torch.zeros(1, 4)], mask=torch.tensor([[1.0, 0.0]]))
    y_ref, _, _ = unroll(SimpleRNNCell(3, 4), torch.ones(1, 2, 3), [torch.zeros(1, 4)],
                         mask=torch.tensor([[True, False]]))
    assert y.shape == (1, 4) and y_ref.shape == (1, 4)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: SimpleRNNCell(3, 0), ValueError, "hidden_size"),
    (lambda: SimpleRNNCell(3.0, 2), TypeError, "input_size"),
])
def test_arguments_checked_by_name(call, exc, name):
    with pytest.raises(exc, match=name):
        call()

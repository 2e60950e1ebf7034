"""ON-LSTM (https://kexue.fm/archives/6621): cumax, hard-gate cases, LSTM limit, soft-argmax identity,
parameter count, gradient check (tree building: tests/metrics/test_parsing.py)."""
import pytest
import torch

from kexue.nn.on_lstm import ONLSTM, ONLSTMCell, cumax, syntactic_distance


def test_cumax_properties():
    x = torch.randn(5, 9, dtype=torch.float64)
    up, down = cumax(x), cumax(x, direction="r2l")
    assert ((up >= 0) & (up <= 1 + 1e-12)).all() and (up.diff(dim=-1) >= 0).all()
    assert (down.diff(dim=-1) <= 0).all()
    torch.testing.assert_close(up[:, -1], torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(down[:, 0], torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(down, cumax(x.flip(-1)).flip(-1))


def _hard_cell(d_f, d_i, n=6, seed=0):
    torch.manual_seed(seed)
    cell = ONLSTMCell(3, n, levels=n).double()
    with torch.no_grad():
        cell.weight_ih[4 * n:] = 0
        cell.weight_hh[4 * n:] = 0
        cell.bias[4 * n:] = -50.0
        cell.bias[4 * n + d_f] = 50.0                 # master forget softmax one-hot at d_f
        cell.bias[5 * n + d_i] = 50.0                 # master input softmax one-hot at d_i
    return cell


@pytest.mark.parametrize("d_f,d_i", [(1, 4), (2, 2), (4, 1), (0, 5), (5, 0)])
def test_hard_gates_reproduce_the_piecewise_update(d_f, d_i):
    n = 6
    cell = _hard_cell(d_f, d_i, n)
    x, h0, c0 = (torch.randn(2, k, dtype=torch.float64) for k in (3, n, n))
    _, (_, c), _ = cell(x, (h0, c0))
    gates = x @ cell.weight_ih[:4 * n].T + h0 @ cell.weight_hh[:4 * n].T + cell.bias[:4 * n]
    i, f, g, _ = gates.chunk(4, -1)
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
    expected = torch.empty_like(c0)
    for k in range(n):
        if d_f <= d_i:
            expected[:, k] = g[:, k] if k < d_f else (f[:, k] * c0[:, k] + i[:, k] * g[:, k] if k <= d_i else c0[:, k])
        else:
            expected[:, k] = g[:, k] if k <= d_i else (c0[:, k] if k >= d_f else 0.0)
    torch.testing.assert_close(c, expected)


def test_lstm_limit_equals_torch_lstmcell():
    n = 6
    cell = _hard_cell(0, n - 1, n)                     # master forget = 1, master input = 1 everywhere
    ref = torch.nn.LSTMCell(3, n).double()
    with torch.no_grad():
        ref.weight_ih.copy_(cell.weight_ih[:4 * n])
        ref.weight_hh.copy_(cell.weight_hh[:4 * n])
        ref.bias_ih.copy_(cell.bias[:4 * n])
        ref.bias_hh.zero_()
    x, h0, c0 = (torch.randn(2, k, dtype=torch.float64) for k in (3, n, n))
    h, (_, c), _ = cell(x, (h0, c0))
    h_ref, c_ref = ref(x, (h0, c0))
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)


def test_soft_argmax_identity():
    logits = torch.randn(4, 7, dtype=torch.float64)
    n = 7
    soft_argmax = (torch.arange(1, n + 1, dtype=torch.float64) * logits.softmax(-1)).sum(-1)
    torch.testing.assert_close(soft_argmax, n * syntactic_distance(cumax(logits)) + 1)


def test_chunking_shapes_and_parameter_count():
    cell = ONLSTMCell(5, 12, levels=4)
    assert cell.chunk_size == 3
    lstm = sum(p.numel() for p in torch.nn.LSTMCell(5, 12).parameters()) - 4 * 12     # one bias vector
    assert sum(p.numel() for p in cell.parameters()) == lstm + 2 * 4 * (5 + 12 + 1)
    _, _, g = cell(torch.randn(2, 5))
    assert g["master_forget"].shape == (2, 4)
    model = ONLSTM(5, 12, num_layers=3, levels=4, return_gates=True)
    out, (h, c), info = model(torch.randn(2, 7, 5))
    assert out.shape == (2, 7, 12) and h.shape == c.shape == (3, 2, 12)
    assert info["distance"].shape == (3, 2, 7)
    expanded = info["master_forget"][1].repeat_interleave(3, -1)          # averaging expanded gate: same d
    torch.testing.assert_close(syntactic_distance(expanded), info["distance"][1])


def test_dropconnect_is_per_sequence_and_off_in_eval():
    torch.manual_seed(0)
    model = ONLSTM(3, 8, levels=4, dropconnect=0.5)
    x = torch.randn(1, 5, 3).expand(2, 5, 3)                               # two identical sequences
    out, _, _ = model(x)
    torch.testing.assert_close(out[0], out[1])                              # one mask for the whole batch/sequence
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0])
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])


def test_gradcheck_three_step_unroll():
    torch.manual_seed(0)
    model = ONLSTM(2, 4, levels=2).double()
    x = torch.randn(1, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: model(t)[0], (x,))


def test_zero_length_sequence_is_refused_like_torch_lstm():
    """Issue 8: T = 0 ended in `stack expects a non-empty TensorList`.  torch.nn.LSTM refuses T = 0 too
    ("Expected sequence length to be larger than 0"), so ON-LSTM matches it with an error naming the input."""
    with pytest.raises(RuntimeError):
        torch.nn.LSTM(4, 8, batch_first=True)(torch.zeros(2, 0, 4))
    for batch_first, x in ((True, torch.zeros(2, 0, 4)), (False, torch.zeros(0, 2, 4))):
        with pytest.raises(ValueError, match="x .*time step"):
            ONLSTM(4, 8, levels=2, batch_first=batch_first)(x)


def test_empty_batch_gives_empty_outputs_like_torch_lstm():
    ref_out, (ref_h, _) = torch.nn.LSTM(4, 8, num_layers=2, batch_first=True)(torch.zeros(0, 3, 4))
    out, (h, c), info = ONLSTM(4, 8, num_layers=2, levels=2)(torch.zeros(0, 3, 4))
    assert out.shape == ref_out.shape == (0, 3, 8) and h.shape == c.shape == ref_h.shape == (2, 0, 8)
    assert info["distance"].shape == (2, 0, 3)


@pytest.mark.parametrize("kw, exc, name", [
    (dict(input_size=0), ValueError, "input_size"), (dict(hidden_size=0), ValueError, "hidden_size"),
    (dict(input_size=4.0), TypeError, "input_size"), (dict(num_layers=0), ValueError, "num_layers"),
    (dict(num_layers=1.5), TypeError, "num_layers"), (dict(levels=0), ValueError, "levels"),
    (dict(levels=16), ValueError, "levels"), (dict(levels=None, chunk_size=0), ValueError, "chunk_size"),
    (dict(levels=3), ValueError, "levels"), (dict(dropconnect=float("nan")), ValueError, "dropconnect"),
    (dict(batch_first="yes"), TypeError, "batch_first"),
])
def test_constructor_sizes_checked_by_name(kw, exc, name):
    with pytest.raises(exc, match=name):
        ONLSTM(**{"input_size": 4, "hidden_size": 8, "levels": 2, **kw})


def test_input_width_and_state_shape_checked():
    layer = ONLSTM(4, 8, levels=2)
    with pytest.raises(ValueError, match="x"):
        layer(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="state"):
        layer(torch.zeros(2, 3, 4), (torch.zeros(1, 3, 8), torch.zeros(1, 3, 8)))

"""BidirectionalDecoderSeq2Seq input checks (issue 8): bad ids, masks and shapes are clear errors, and a batch
whose targets are all padding gives a zero loss instead of NaN."""
import pytest
import torch

from kexue.models.seq2seq_bidirectional import BidirectionalDecoderSeq2Seq


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return BidirectionalDecoderSeq2Seq(20, embedding_size=8, hidden_size=8, enc_layers=1, dec_layers=1, num_heads=2,
                                       head_dim=4)


SRC = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
TGT = torch.tensor([[1, 8, 9, 2], [1, 10, 2, 0]])


@pytest.mark.parametrize("kw,error,match", [
    (dict(src=torch.tensor([[3, 20, 5, 0], [6, 7, 0, 0]])), ValueError, r"src contain ids in \[0, 20\], outside the vocabulary \[0, 20\)"),
    (dict(src=SRC.float()), TypeError, r"src must hold integer ids"),
    (dict(tgt_l2r=torch.tensor([[1, 8, 9, -1], [1, 10, 2, 0]])), ValueError, r"tgt_l2r contain ids in \[-1, 10\]"),
    (dict(tgt_r2l=TGT[:, :3]), ValueError, r"tgt_r2l has shape \(2, 3\); expected \[B, n\] = \[2, 4\]"),
    (dict(tgt_l2r=TGT[:1], tgt_r2l=TGT[:1]), ValueError, r"tgt_l2r has batch size 1 but src has 2"),
    (dict(src_mask=torch.tensor([[1, 1, 2, 0], [1, 1, 0, 0]])), ValueError, r"src_mask must hold only 0 and 1.*got the value 2"),
    (dict(src_mask=torch.ones(2, 3)), ValueError, r"src_mask has shape \(2, 3\); expected \[2, 4\]"),
    (dict(tgt_mask=torch.full((2, 4), 0.5)), ValueError, r"tgt_mask must hold only 0 and 1.*0.5"),
    (dict(tgt_l2r=TGT[:, :1], tgt_r2l=TGT[:, :1]), ValueError, r"tgt_l2r and tgt_r2l must have shape \[B, T >= 2\]"),
])
def test_bad_inputs_are_clear_errors(model, kw, error, match):
    args = {**dict(src=SRC, tgt_l2r=TGT, tgt_r2l=TGT.flip(1)), **kw}
    with pytest.raises(error, match=match):
        model(**args)


def test_all_padding_targets_give_zero_loss_not_nan(model):
    tgt = torch.tensor([[1, 0, 0], [1, 0, 0]])              # nothing to predict after [BOS]
    out = model(SRC, tgt, tgt)
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_is_the_mean_over_real_target_tokens(model):
    out = model(SRC, TGT, TGT.flip(1))
    m = TGT[:, 1:] != 0
    ce = lambda lg, y: torch.nn.functional.cross_entropy(lg[m], y[:, 1:][m])   # noqa: E731
    torch.testing.assert_close(out.loss, (ce(out.logits_l2r, TGT) + ce(out.logits_r2l, TGT.flip(1))) / 2)


def test_pad_id_must_be_in_the_vocabulary():
    with pytest.raises(ValueError, match=r"pad_id must be an int in \[0, 19\], got 20"):
        BidirectionalDecoderSeq2Seq(20, pad_id=20)

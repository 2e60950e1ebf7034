"""kexue.tasks.seq2seq (https://kexue.fm/archives/6933): the UniLM pair layout, padding, and the fine-tuning loop
(seeded, learns a toy copy task, refuses bad settings by name)."""
import pytest
import torch

from kexue.models import build_transformer_model
from kexue.tasks import collate_seq2seq, encode_seq2seq, seq2seq_loss, train_seq2seq
from kexue.tokenizers import Tokenizer, build_char_vocab

VOCAB = build_char_vocab(["甲乙丙丁戊己庚辛"], min_count=1)
TOK = Tokenizer(VOCAB)
CLS, SEP = VOCAB["[CLS]"], VOCAB["[SEP]"]


def _model(seed=0):
    torch.manual_seed(seed)
    cfg = dict(model_type="bert", vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)
    return build_transformer_model(config=cfg, application="unilm", with_mlm=True)


def test_encode_layout_and_caps():
    ids, seg = encode_seq2seq(TOK, "甲乙丙", "丁戊")
    v = VOCAB
    assert ids == [CLS, v["甲"], v["乙"], v["丙"], SEP, v["丁"], v["戊"], SEP] and seg == [0] * 5 + [1] * 3
    ids, seg = encode_seq2seq(TOK, "甲乙丙", "丁戊", max_source_len=1, max_target_len=1)
    assert ids == [CLS, v["甲"], SEP, v["丁"], SEP] and seg == [0, 0, 0, 1, 1]


def test_collate_pads_right_with_segment_zero():
    batch = collate_seq2seq([encode_seq2seq(TOK, "甲", "乙"), encode_seq2seq(TOK, "甲乙丙", "丁戊")])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"][0].tolist() == [1] * 5 + [0] * 3
    assert batch["segment_ids"][0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert (batch["input_ids"][0, 5:] == 0).all()


def _copy_examples(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    chars = "甲乙丙丁戊己庚辛"
    texts = ["".join(chars[i] for i in torch.randint(0, 8, (3,), generator=g).tolist()) for _ in range(n)]
    return [encode_seq2seq(TOK, t, t) for t in texts]


def test_training_is_seeded_and_learns_to_copy():
    ex = _copy_examples()
    a, b = _model(), _model()
    assert train_seq2seq(a, ex, steps=4, batch_size=8, seed=1) == train_seq2seq(b, ex, steps=4, batch_size=8, seed=1)
    assert seq2seq_loss(a, collate_seq2seq(ex)).item() == seq2seq_loss(b, collate_seq2seq(ex)).item()
    model = _model()
    losses = train_seq2seq(model, ex, steps=80, batch_size=16, lr=1e-2, seed=1)
    assert not model.training and len(losses) == 80
    assert sum(losses[-10:]) / 10 < 0.3 * sum(losses[:10]) / 10


def test_bad_settings_are_refused_by_name():
    ex = _copy_examples(4)
    with pytest.raises(ValueError, match="steps"):
        train_seq2seq(_model(), ex, steps=0)
    with pytest.raises(ValueError, match="lr"):
        train_seq2seq(_model(), ex, steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="unilm"):
        enc = build_transformer_model(config=dict(model_type="bert", vocab_size=len(VOCAB), hidden_size=8,
                                                  num_hidden_layers=1, num_attention_heads=1, intermediate_size=8))
        train_seq2seq(enc, ex, steps=1)
    with pytest.raises(ValueError, match="at least one"):
        train_seq2seq(_model(), [], steps=1)
    with pytest.raises(ValueError, match="one length"):
        collate_seq2seq([([1, 2], [0])])
    with pytest.raises(ValueError, match="target"):
        encode_seq2seq(TOK, "甲", "")

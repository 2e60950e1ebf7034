"""TheseusModel follows its predecessor's padding rule (issue 8): without attention_mask the pad id is masked,
so the all-predecessor path equals the predecessor classifier on a padded batch."""
import torch
from torch import nn

import kexue
from kexue.compress import SequenceClassifier, TheseusModel


def test_all_predecessor_path_equals_the_predecessor_on_a_padded_batch_without_mask():
    cfg = dict(model_type="bert", vocab_size=40, hidden_size=16, num_attention_heads=2, intermediate_size=24,
               max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    pred = kexue.build_transformer_model(config=dict(cfg, num_hidden_layers=4), with_pool=True)
    succ = kexue.build_transformer_model(config=dict(cfg, num_hidden_layers=2), with_pool=True)
    model = TheseusModel(pred, succ, nn.Linear(16, 3)).eval()
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14]])          # row 0 right-padded with id 0
    with torch.no_grad():
        theseus = model(ids, path=torch.zeros(model.num_switches, dtype=torch.bool)).logits
        reference = SequenceClassifier(model.predecessor, head=model.head).eval()(ids).logits
        alone = SequenceClassifier(model.predecessor, head=model.head).eval()(ids[:1, :4]).logits
    torch.testing.assert_close(theseus, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(theseus[0], alone[0], atol=1e-5, rtol=0)

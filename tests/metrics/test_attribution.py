"""kexue.metrics.attribution: hit@1 and ROC AUC of token scores, against sklearn and hand-made cases."""
import pytest
import torch
from sklearn.metrics import roc_auc_score

from kexue.metrics import attribution_hit_at_1, roc_auc


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_sklearn_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (40,), generator=g).double()          # many ties
    relevant = torch.rand(40, generator=g) < 0.3
    assert roc_auc(scores, relevant) == pytest.approx(roc_auc_score(relevant.numpy(), scores.numpy()), abs=1e-12)


def test_hand_made_cases():
    rel = torch.tensor([False, True, False, False])
    assert roc_auc(torch.tensor([0.1, 0.9, 0.2, 0.3]), rel) == 1.0
    assert roc_auc(torch.tensor([0.1, 0.0, 0.2, 0.3]), rel) == 0.0
    assert roc_auc(torch.zeros(4), rel) == 0.5
    assert attribution_hit_at_1(torch.tensor([0.1, 0.9, 0.2, 0.3]), rel) == 1.0
    assert attribution_hit_at_1(torch.tensor([0.1, 0.2, 0.9, 0.3]), rel) == 0.0
    assert attribution_hit_at_1(torch.ones(4), rel) == 0.25            # a constant score is no free hit


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="relevant and irrelevant"):
        roc_auc(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool mask"):
        attribution_hit_at_1(torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="finite"):
        attribution_hit_at_1(torch.tensor([float("nan"), 1.0]), torch.tensor([True, False]))

"""Issue 9 / docs/naming.md: the model modules of kexue.models take the same keyword names as kexue.nn."""
import inspect

import pytest
import torch
from torch import nn

import kexue.models as km
from tests.nn.test_naming import RETIRED

# retired in kexue.models besides the kexue.nn list: a width is `*_size`, the head count `num_heads`, a padding
# mask `attention_mask`, an additive attention bias `attention_bias`
MODEL_RETIRED = RETIRED | {"emb_dim", "heads", "other_mask", "attn_bias", "kv_dim"}
# still being renamed (docs/naming.md section 4, "pending")
PENDING = {"apply_block", "apply_main_layers", "attend"}


def _modules():
    return [n for n in km.__all__ if inspect.isclass(getattr(km, n)) and issubclass(getattr(km, n), nn.Module)]


@pytest.mark.parametrize("name", _modules())
def test_model_modules_use_no_retired_keyword(name):
    cls = getattr(km, name)
    offenders = {}
    for attr in ["__init__"] + [a for a in dir(cls) if not a.startswith("_") and a not in PENDING]:
        fn = getattr(cls, attr, None)
        if not inspect.isfunction(fn):
            continue
        bad = sorted(MODEL_RETIRED & set(inspect.signature(fn).parameters))
        if bad:
            offenders[attr] = bad
    assert offenders == {}


def test_seq2seq_takes_the_canonical_names():
    m = km.BidirectionalDecoderSeq2Seq(20, embedding_size=8, hidden_size=8, enc_layers=1, dec_layers=1,
                                       num_heads=2, head_dim=4)
    assert m.embedding.embedding_dim == 8 and m.interact[0].head_dim == 4 and m.interact[0].num_heads == 2
    att = km.CrossDirectionAttention(hidden_size=6, num_heads=2, head_dim=3, causal=False)
    a, b = torch.randn(1, 4, 6), torch.randn(1, 5, 6)
    full = att(a, b)
    # attention_mask: 1 = real token of the attended sequence; masking its last 2 steps = dropping them
    masked = att(a, b, attention_mask=torch.tensor([[1, 1, 1, 0, 0]]))
    torch.testing.assert_close(masked, att(a, b[:, :3]))
    assert not torch.allclose(masked, full)

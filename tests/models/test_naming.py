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
PENDING = set()


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


def test_config_names_the_resolved_embedding_width_input_embedding_size():
    """docs/naming.md: `embedding_size` is the factorised E given in the config (None = C); the resolved width of
    the token-embedding table is `input_embedding_size`. `embed_dim` meant E here and C in MultiHeadAttention:
    it is gone from the config."""
    from kexue.models.config import TransformerConfig
    base = dict(model_type="albert", vocab_size=10, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16)
    assert TransformerConfig(**base).input_embedding_size == 8
    factorised = TransformerConfig(**base, embedding_size=4)
    assert factorised.input_embedding_size == 4 and not hasattr(factorised, "embed_dim")
    model = km.ALBERT(factorised)
    assert model.config.input_embedding_size == model.embeddings.word.embedding_dim == 4

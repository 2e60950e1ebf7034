"""TransformerOutput is indexed like transformers' ModelOutput: out["logits"] by name, out[0] / out[:2] over
the fields that are set (not None), in declaration order."""
import pytest
import torch

from kexue.models.transformer import TransformerOutput


def test_int_and_slice_index_the_fields_that_are_set():
    h, logits = torch.randn(2, 3, 4), torch.randn(2, 3, 5)
    out = TransformerOutput(last_hidden_state=h, logits=logits)
    assert out[0] is h and out[1] is logits and out[-1] is logits      # pooled (None) is skipped, as in HF
    assert out[:2] == (h, logits)
    assert out["logits"] is logits and out["pooled"] is None
    with pytest.raises(IndexError):
        out[2]
    with pytest.raises(TypeError, match="TransformerOutput indices must be int, slice or str, got float"):
        out[0.5]

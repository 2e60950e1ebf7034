"""A model built from its class (not through build_transformer_model) knows its family and saves a checkpoint
that `transformers` loads back to the same outputs; NaN weights are refused unless asked for."""
import math

import pytest
import torch
import transformers

from kexue.models import BERT, T5
from kexue.models.bert import bert_config_from_hf
from kexue.models.t5 import t5_config_from_hf

BERT_HF = dict(model_type="bert", vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=32, max_position_embeddings=32, type_vocab_size=2, pad_token_id=0)


def test_directly_constructed_bert_saves_and_transformers_loads_it(tmp_path):
    model = BERT(bert_config_from_hf(BERT_HF)).eval()
    model.save_pretrained(tmp_path)
    hf = transformers.BertModel.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[2, 7, 9, 4, 3]])
    with torch.no_grad():
        ref = hf(ids).last_hidden_state
        out = model(ids).last_hidden_state
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_directly_constructed_t5_knows_its_family():
    cfg = t5_config_from_hf(dict(model_type="t5", vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                 num_heads=2, decoder_start_token_id=0, eos_token_id=1, pad_token_id=0))
    assert T5(cfg).family.name == "t5"


def test_save_pretrained_refuses_nan_unless_allowed(tmp_path):
    model = BERT(bert_config_from_hf(BERT_HF))
    with torch.no_grad():
        model.embeddings.word.weight[3, 0] = math.nan
    with pytest.raises(ValueError, match="allow_nonfinite"):
        model.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b", allow_nonfinite=True)
    assert (tmp_path / "b" / "model.safetensors").exists()

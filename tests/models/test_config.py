"""Config validation (issue 8): every bad config value is refused at config time, before any tensor is
allocated, with an error naming the field, the value and what was expected (and the config file when there is
one)."""
from __future__ import annotations

import json

import pytest
import torch

import kexue
from kexue.models import TransformerConfig

BERT = dict(model_type="bert", vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=20, max_position_embeddings=32)
GPT2 = dict(model_type="gpt2", vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=32)
T5 = dict(model_type="t5", vocab_size=40, d_model=16, d_kv=8, d_ff=20, num_layers=1, num_heads=2)


def build(base: dict, **changes):
    return kexue.build_transformer_model(config={**base, **changes})


def test_valid_configs_build_and_run():
    for base in (BERT, GPT2):
        out = build(base).eval()(torch.tensor([[1, 2, 3]]))
        assert torch.isfinite(out.last_hidden_state).all()


@pytest.mark.parametrize("base,key,value,field,exc", [
    (BERT, "layer_norm_eps", -1.0, "layer_norm_eps", ValueError),           # NaN output before
    (BERT, "layer_norm_eps", 0.0, "layer_norm_eps", ValueError),
    (BERT, "layer_norm_eps", float("nan"), "layer_norm_eps", ValueError),
    (GPT2, "layer_norm_epsilon", float("inf"), "layer_norm_epsilon", ValueError),
    (BERT, "tie_word_embeddings", "no", "tie_word_embeddings", TypeError),  # was read as True
    (BERT, "tie_word_embeddings", 0, "tie_word_embeddings", TypeError),
    (BERT, "hidden_dropout_prob", 1.0, "hidden_dropout_prob", ValueError),
    (BERT, "hidden_dropout_prob", -0.1, "hidden_dropout_prob", ValueError),
    (BERT, "attention_probs_dropout_prob", 1.5, "attention_probs_dropout_prob", ValueError),
    (GPT2, "attn_pdrop", "0.1", "attn_pdrop", TypeError),
    (BERT, "hidden_size", "32", "hidden_size", TypeError),
    (BERT, "hidden_size", -16, "hidden_size", ValueError),
    (BERT, "hidden_size", 16.0, "hidden_size", TypeError),
    (BERT, "hidden_size", 15, "num_attention_heads", ValueError),            # 15 % 2 != 0
    (BERT, "num_attention_heads", 0, "num_attention_heads", ValueError),     # ZeroDivisionError before
    (BERT, "num_attention_heads", -2, "num_attention_heads", ValueError),    # "math domain error" before
    (GPT2, "n_head", 0, "n_head", ValueError),
    (BERT, "num_hidden_layers", 0, "num_hidden_layers", ValueError),         # blamed num_hidden_groups before
    (BERT, "vocab_size", 0, "vocab_size", ValueError),
    (BERT, "intermediate_size", True, "intermediate_size", TypeError),
    (BERT, "max_position_embeddings", 1e8, "max_position_embeddings", TypeError),
    (BERT, "max_position_embeddings", -1, "max_position_embeddings", ValueError),
    (BERT, "type_vocab_size", -1, "type_vocab_size", ValueError),
    (BERT, "hidden_act", "gelu_fancy", "hidden_act", ValueError),
    (BERT, "pad_token_id", 40, "pad_token_id", ValueError),                  # outside the vocabulary
    (T5, "d_kv", 0, "d_kv", ValueError),
    (T5, "relative_attention_num_buckets", 0, "relative_attention_num_buckets", ValueError),
    (T5, "relative_attention_num_buckets", 2, "relative_attention_num_buckets", ValueError),    # ZeroDivisionError
    (T5, "relative_attention_num_buckets", 3, "relative_attention_num_buckets", ValueError),
    (T5, "relative_attention_max_distance", 16, "relative_attention_max_distance", ValueError),  # 32 // 2: inf
    (T5, "relative_attention_max_distance", 1, "relative_attention_max_distance", ValueError),   # IndexError
    (T5, "num_decoder_layers", -1, "num_decoder_layers", ValueError),
])
def test_bad_value_names_field_and_value(base, key, value, field, exc):
    with pytest.raises(exc, match=field) as info:
        build(base, **{key: value})
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_albert_groups_must_divide_layers():
    with pytest.raises(ValueError, match="num_hidden_groups"):
        build({**BERT, "model_type": "albert", "embedding_size": 8}, num_hidden_layers=3, num_hidden_groups=2)


def test_overrides_are_validated():
    with pytest.raises(TypeError, match="num_layers"):
        kexue.build_transformer_model(config=BERT, num_layers="2")
    with pytest.raises(ValueError, match="layer_norm_eps"):
        kexue.build_transformer_model(config=BERT, layer_norm_eps=-1e-5)
    with pytest.raises(TypeError, match="tie_word_embeddings"):
        kexue.build_transformer_model(config=BERT, tie_word_embeddings="no")


def test_direct_dataclass_is_validated():
    with pytest.raises(ValueError, match="num_heads"):
        TransformerConfig(model_type="bert", vocab_size=10, hidden_size=8, num_layers=1, num_heads=0,
                          intermediate_size=8)


def test_missing_field_names_field_and_file(tmp_path):
    cfg = dict(BERT)
    del cfg["vocab_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(KeyError, match="vocab_size") as info:
        kexue.build_transformer_model(config=str(tmp_path / "config.json"))
    assert "config.json" in str(info.value)
    with pytest.raises(KeyError, match="n_embd"):
        build({k: v for k, v in GPT2.items() if k != "n_embd"})


@pytest.mark.parametrize("text,what", [("[1, 2]", "list"), ("", "JSON"), ("{'a': 1}", "JSON"), ("3", "int")])
def test_config_json_not_an_object(tmp_path, text, what):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=what) as info:
        kexue.build_transformer_model(config=str(tmp_path))
    assert "config.json" in str(info.value)


def test_config_of_wrong_type():
    with pytest.raises(TypeError, match="config"):
        kexue.build_transformer_model(config=[("vocab_size", 3)])


@pytest.mark.parametrize("model_type", ["bort", 3, ["bert"], None])
def test_unknown_or_non_string_model_type(model_type):
    with pytest.raises(ValueError, match="model"):
        build(BERT, model_type=model_type)


@pytest.mark.parametrize("key,value", [("vocab_size", 2 ** 31), ("max_position_embeddings", 10 ** 9),
                                       ("intermediate_size", 10 ** 9)])
def test_huge_sizes_refused_before_allocating(key, value):
    """Would allocate tens of GB: refused at config time, the message says how many parameters."""
    with pytest.raises(ValueError, match=f"{key}.*parameters"):
        build(BERT, **{key: value})


def test_huge_total_refused_before_allocating():
    """Each matrix fits the per-tensor bound, the whole model does not (~8e11 parameters)."""
    with pytest.raises(ValueError, match=r"total.*GiB"):
        build(BERT, hidden_size=8192, intermediate_size=32768, num_hidden_layers=1000)
    with pytest.raises(ValueError, match=r"num_hidden_layers.*1000000"):       # a million tiny layers
        build(BERT, num_hidden_layers=10 ** 6)


def test_checkpoint_given_as_config_file(tmp_path):
    """A path to config.json as the checkpoint used to torch.load the JSON and advise weights_only=False."""
    (tmp_path / "config.json").write_text(json.dumps(BERT))
    with pytest.raises(ValueError, match="directory") as info:
        kexue.build_transformer_model(str(tmp_path / "config.json"))
    assert "config=" in str(info.value) and "weights_only" not in str(info.value)


def test_save_pretrained_onto_a_file(tmp_path):
    model = build(BERT)
    (tmp_path / "f").write_text("x")
    with pytest.raises((NotADirectoryError, FileExistsError), match="save_pretrained.*not a directory"):
        model.save_pretrained(str(tmp_path / "f"))


@pytest.mark.parametrize("flag", ["with_pool", "with_mlm", "strict", "allow_nonfinite"])
def test_build_flags_must_be_bools(flag):
    with pytest.raises(TypeError, match=flag):
        kexue.build_transformer_model(config=BERT, **{flag: "no"})


def test_rotary_needs_an_even_head_dim():
    with pytest.raises(ValueError, match=r"hidden_size=2.*num_heads=2.*1"):
        build({**BERT, "model_type": "roformer"}, hidden_size=2, num_attention_heads=2)


def test_huge_rotary_table_refused():
    with pytest.raises(ValueError, match="max_position.*parameters"):
        build({**BERT, "model_type": "roformer"}, max_position_embeddings=2 ** 28)

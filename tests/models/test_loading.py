"""Strict loading: formats, prefixes, heads, vocabulary surgery, layer truncation, error messages."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import kexue
from kexue.models import CheckpointError

from .hf_factories import hf_model, save


@pytest.fixture()
def bert_dir(tmp_path):
    return save(hf_model("bert", "mlm"), tmp_path / "bert")


def _rewrite(src: str, dst, edit) -> str:
    os.makedirs(dst, exist_ok=True)
    state = edit(load_file(os.path.join(src, "model.safetensors")))
    save_file(state, os.path.join(dst, "model.safetensors"))
    with open(os.path.join(src, "config.json")) as f, open(os.path.join(dst, "config.json"), "w") as g:
        g.write(f.read())
    return str(dst)


def test_missing_weight_is_named_with_shape(bert_dir, tmp_path):
    d = _rewrite(bert_dir, tmp_path / "x", lambda s: {k: v for k, v in s.items()
                                                      if k != "bert.encoder.layer.1.output.dense.weight"})
    with pytest.raises(CheckpointError, match=r"missing.*blocks\.1\.ffn\.down\.weight \(32, 37\)"):
        kexue.build_transformer_model(d)


def test_unexpected_weight_is_named(bert_dir, tmp_path):
    d = _rewrite(bert_dir, tmp_path / "x", lambda s: {**s, "bert.encoder.layer.0.extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected.*bert\.encoder\.layer\.0\.extra\.weight \(3,\)"):
        kexue.build_transformer_model(d)


def test_misshaped_weight_names_both_shapes(bert_dir, tmp_path):
    d = _rewrite(bert_dir, tmp_path / "x", lambda s: {**s, "bert.pooler.dense.weight": torch.zeros(32, 31)})
    with pytest.raises(CheckpointError, match=r"checkpoint \(32, 31\) vs model \(32, 32\)"):
        kexue.build_transformer_model(d, with_pool=True)


def test_wrong_prefix_is_an_error_not_a_random_model(bert_dir, tmp_path):
    """bert4torch loads a wrong prefix as a randomly initialised model with a warning; we refuse."""
    d = _rewrite(bert_dir, tmp_path / "x", lambda s: {k.replace("bert.", "encoder_model."): v for k, v in s.items()})
    with pytest.raises(CheckpointError, match="unexpected"):
        kexue.build_transformer_model(d)


def test_strict_false_reports_what_it_skipped(bert_dir, tmp_path):
    d = _rewrite(bert_dir, tmp_path / "x", lambda s: {k: v for k, v in s.items() if "layer.1.output.dense" not in k})
    model = kexue.build_transformer_model(d, strict=False)
    assert "blocks.1.ffn.down.weight (32, 37)" in model.load_report.missing
    assert "missing" in model.load_report.summary()


def test_heads_not_built_are_reported_not_loaded(bert_dir):
    model = kexue.build_transformer_model(bert_dir)        # no MLM head requested
    assert any(k.startswith("cls.predictions") for k in model.load_report.skipped_heads)
    assert model.mlm is None


def test_requested_head_missing_from_checkpoint_fails(tmp_path):
    d = save(hf_model("bert", "mlm"), tmp_path)            # BertForMaskedLM has no pooler
    with pytest.raises(CheckpointError, match="pooler"):
        kexue.build_transformer_model(d, with_pool=True)


def test_keys_without_family_prefix_and_bin_format(tmp_path):
    hf = hf_model("bert", "base")                            # BertModel saves keys without "bert."
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    os.makedirs(tmp_path / "bin")
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text(json.dumps(hf.config.to_dict()))
    model = kexue.build_transformer_model(str(tmp_path / "bin"), with_pool=True).eval()
    ids = torch.randint(0, 101, (2, 6))
    with torch.no_grad():
        real = torch.ones_like(ids)                          # HF sees every token; kexue would mask pad ids
        assert (model(ids, attention_mask=real).last_hidden_state - hf(input_ids=ids).last_hidden_state).abs().max() <= 1e-5


class _Evil:
    """Any non-tensor global in a pickle; weights_only=True must refuse to rebuild it."""


def test_bin_refuses_pickled_objects(tmp_path, bert_dir):
    os.makedirs(tmp_path / "evil")
    torch.save({"x": _Evil()}, tmp_path / "evil" / "pytorch_model.bin")
    with open(os.path.join(bert_dir, "config.json")) as f:
        (tmp_path / "evil" / "config.json").write_text(f.read())
    with pytest.raises(Exception, match="(?i)weights_only|Unsupported global"):
        kexue.build_transformer_model(str(tmp_path / "evil"))


def test_sharded_checkpoint(tmp_path, bert_dir):
    state = load_file(os.path.join(bert_dir, "model.safetensors"))
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    os.makedirs(tmp_path / "sharded")
    weight_map = {}
    for name, ks in shards.items():
        save_file({k: state[k] for k in ks}, str(tmp_path / "sharded" / name))
        weight_map.update({k: name for k in ks})
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open(os.path.join(bert_dir, "config.json")) as f:
        (tmp_path / "sharded" / "config.json").write_text(f.read())
    a = kexue.build_transformer_model(str(tmp_path / "sharded"), with_mlm=True).eval()
    b = kexue.build_transformer_model(bert_dir, with_mlm=True).eval()
    ids = torch.randint(0, 101, (2, 5))
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)


def test_keep_tokens_and_compound_tokens(bert_dir):
    hf = kexue.build_transformer_model(bert_dir, with_mlm=True).eval()
    keep = [0, 5, 7, 9, 11, 50, 100]
    compound = [[1, 2], ([3, 4], [1.0, 3.0])]
    small = kexue.build_transformer_model(bert_dir, with_mlm=True, keep_tokens=keep, compound_tokens=compound).eval()
    assert small.config.vocab_size == len(keep) + 2
    W, w = hf.embeddings.word.weight, small.embeddings.word.weight
    assert torch.equal(w[: len(keep)], W[keep])
    torch.testing.assert_close(w[len(keep)], W[[keep[1], keep[2]]].mean(0))
    torch.testing.assert_close(w[len(keep) + 1], (W[keep[3]] + 3 * W[keep[4]]) / 4)
    ids_small = torch.tensor([[0, 1, 2, 3, 4, 5, 6]])
    ids_big = torch.tensor([keep])
    with torch.no_grad():
        a, b = small(ids_small).logits, hf(ids_big).logits
    torch.testing.assert_close(a[..., : len(keep)], b[..., keep], atol=1e-5, rtol=0)


def test_num_layers_override_keeps_first_layers(bert_dir):
    full = kexue.build_transformer_model(bert_dir).eval()
    one = kexue.build_transformer_model(bert_dir, num_layers=1).eval()
    ids = torch.randint(0, 101, (2, 6))
    with torch.no_grad():
        ref = full(ids, output_hidden_states=True).hidden_states[1]
        assert (one(ids).last_hidden_state - ref).abs().max() <= 1e-6


def test_unknown_model_and_application_and_override(bert_dir):
    with pytest.raises(ValueError, match=r"model='bort' is not supported; expected one of"):
        kexue.build_transformer_model(bert_dir, model="bort")
    with pytest.raises(ValueError, match=r"application='seq2seq' is not supported"):
        kexue.build_transformer_model(bert_dir, application="seq2seq")
    with pytest.raises(ValueError, match=r"unknown config overrides \['num_layerz'\]"):
        kexue.build_transformer_model(bert_dir, num_layerz=2)
    with pytest.raises(FileNotFoundError):
        kexue.build_transformer_model(str(bert_dir) + "-nope")


@pytest.mark.parametrize("name,cfg,hf_cls", [
    ("bert", dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
                  hidden_act="gelu_new", layer_norm_eps=1e-6), "BertForMaskedLM"),
    ("albert", dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                    embedding_size=8), "AlbertForMaskedLM"),
    ("gpt2", dict(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=32), "GPT2LMHeadModel"),
    ("gpt", dict(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=32), "OpenAIGPTLMHeadModel"),
])
def test_config_built_model_saves_a_complete_config(tmp_path, name, cfg, hf_cls):
    """A model built from a bare dict (no model_type, library defaults) saves a config transformers reads
    into the same architecture: same outputs after the round trip."""
    import transformers
    model = kexue.build_transformer_model(config=cfg, model=name, with_mlm=True).eval()
    model.save_pretrained(str(tmp_path))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == {"gpt": "openai-gpt"}.get(name, name)
    back = getattr(transformers, hf_cls).from_pretrained(str(tmp_path)).eval()
    ids = torch.randint(0, 40, (2, 6))
    with torch.no_grad():
        real = torch.ones_like(ids)                          # HF sees every token; kexue would mask pad ids
        assert (back(input_ids=ids).logits - model(ids, attention_mask=real).logits).abs().max() <= 1e-5

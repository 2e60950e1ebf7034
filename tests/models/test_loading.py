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


# ---- issue 8: sharded checkpoints ---------------------------------------------------------------------------
def _shard(bert_dir, out, split=None, weight_map_edit=None):
    """Write bert_dir's weights as two shards a/b and an index; returns (dir, state, weight_map)."""
    state = load_file(os.path.join(bert_dir, "model.safetensors"))
    keys = sorted(state)
    split = split or {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2:]}
    os.makedirs(out, exist_ok=True)
    weight_map = {}
    for name, ks in split.items():
        save_file({k: state[k] for k in ks}, str(out / name))
        weight_map.update({k: name for k in ks})
    if weight_map_edit is not None:
        weight_map = weight_map_edit(weight_map)
    (out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open(os.path.join(bert_dir, "config.json")) as f:
        (out / "config.json").write_text(f.read())
    return out, state, weight_map


def test_sharded_key_comes_from_the_shard_the_index_names(tmp_path, bert_dir):
    """b.safetensors also holds a stale (zeroed) copy of a key the index maps to a.safetensors."""
    state = load_file(os.path.join(bert_dir, "model.safetensors"))
    keys = sorted(state)
    key = "bert.embeddings.word_embeddings.weight"
    a = [k for k in keys[: len(keys) // 2]] + ([key] if key not in keys[: len(keys) // 2] else [])
    b = [k for k in keys if k not in a]
    d = tmp_path / "s"
    os.makedirs(d)
    save_file({k: state[k] for k in a}, str(d / "a.safetensors"))
    save_file({**{k: state[k] for k in b}, key: torch.zeros_like(state[key])}, str(d / "b.safetensors"))
    wm = {**{k: "a.safetensors" for k in a}, **{k: "b.safetensors" for k in b}}
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    with open(os.path.join(bert_dir, "config.json")) as f:
        (d / "config.json").write_text(f.read())
    loaded = kexue.models.read_state_dict(str(d))
    assert torch.equal(loaded[key], state[key])
    assert set(loaded) == set(state)
    model = kexue.build_transformer_model(str(d))
    assert torch.equal(model.embeddings.word.weight, state[key])


def test_sharded_key_missing_from_its_shard(tmp_path, bert_dir):
    d, state, _ = _shard(bert_dir, tmp_path / "s", weight_map_edit=lambda wm: {**wm, "bert.extra.weight": "a.safetensors"})
    with pytest.raises(CheckpointError, match=r"a\.safetensors.*lacks.*bert\.extra\.weight"):
        kexue.models.read_state_dict(str(d))


def test_sharded_key_not_in_index(tmp_path, bert_dir):
    drop = "bert.embeddings.LayerNorm.bias"
    d, _, _ = _shard(bert_dir, tmp_path / "s", weight_map_edit=lambda wm: {k: v for k, v in wm.items() if k != drop})
    with pytest.raises(CheckpointError, match=r"index.*bert\.embeddings\.LayerNorm\.bias"):
        kexue.models.read_state_dict(str(d))


@pytest.mark.parametrize("shard", ["../x.safetensors", "../../x.safetensors", "sub/../../x.safetensors", "ABS"])
def test_shard_outside_the_folder_is_refused(tmp_path, bert_dir, shard):
    state = load_file(os.path.join(bert_dir, "model.safetensors"))
    d = tmp_path / "ck" / "s"
    os.makedirs(d / "sub")
    for outside in (tmp_path / "x.safetensors", tmp_path / "ck" / "x.safetensors"):   # loadable files outside
        save_file(state, str(outside))
    name = str(tmp_path / "x.safetensors") if shard == "ABS" else shard
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: name for k in state}}))
    with pytest.raises(CheckpointError, match="outside"):
        kexue.models.read_state_dict(str(d))


def test_shard_symlink_escaping_the_folder_is_refused(tmp_path, bert_dir):
    state = load_file(os.path.join(bert_dir, "model.safetensors"))
    save_file(state, str(tmp_path / "x.safetensors"))
    d = tmp_path / "s"
    os.makedirs(d)
    os.symlink(tmp_path / "x.safetensors", d / "a.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: "a.safetensors" for k in state}}))
    with pytest.raises(CheckpointError, match="outside"):
        kexue.models.read_state_dict(str(d))


@pytest.mark.parametrize("index", ['[1]', '{"weight_map": [1]}', '{"weight_map": {"a": 3}}', 'nope', '{}'])
def test_malformed_shard_index(tmp_path, index):
    (tmp_path / "model.safetensors.index.json").write_text(index)
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json"):
        kexue.models.read_state_dict(str(tmp_path))


# ---- issue 8: weights that are not weights ----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weight_is_refused_by_key(bert_dir, tmp_path, bad):
    key = "bert.encoder.layer.0.output.dense.weight"
    def edit(s):
        s[key] = s[key].clone()
        s[key][3, 4] = bad
        return s
    d = _rewrite(bert_dir, tmp_path / "x", edit)
    with pytest.raises(CheckpointError, match=r"non-finite.*encoder\.layer\.0\.output\.dense\.weight"):
        kexue.build_transformer_model(d)
    model = kexue.build_transformer_model(d, allow_nonfinite=True)       # the opt-out
    assert not torch.isfinite(model.blocks[0].ffn.down.weight).all()


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_weight_for_float_parameter_is_refused(bert_dir, tmp_path, dtype):
    key = "bert.embeddings.LayerNorm.weight"
    d = _rewrite(bert_dir, tmp_path / "x", lambda s: {**s, key: s[key].to(dtype)})
    with pytest.raises(CheckpointError, match=r"embeddings\.LayerNorm\.weight.*" + str(dtype).split(".")[1] + ".*float"):
        kexue.build_transformer_model(d)


def test_half_precision_checkpoint_still_loads(bert_dir, tmp_path):
    d = _rewrite(bert_dir, tmp_path / "x", lambda s: {k: v.half() for k, v in s.items()})
    model = kexue.build_transformer_model(d)
    ref = load_file(os.path.join(d, "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    assert torch.equal(model.embeddings.word.weight, ref.float())


# ---- issue 8: keep_tokens / compound_tokens ---------------------------------------------------------------------
@pytest.mark.parametrize("compound,match", [
    ([[-1]], r"compound_tokens\[0\].*-1"),                      # used the last row before
    ([[7]], r"compound_tokens\[0\].*7.*\[0, 7\)"),              # 7 kept tokens: ids in [0, 7)
    ([([1, 2], [1.0, -1.0])], r"compound_tokens\[0\].*weights"),  # inf embedding before
    ([([1, 2], [0.0, 0.0])], r"compound_tokens\[0\].*weights"),
    ([([1, 2], [1.0, float("nan")])], r"compound_tokens\[0\].*weights"),
    ([([1, 2], [1.0])], r"compound_tokens\[0\].*2 ids.*1 weight"),
    ([[]], r"compound_tokens\[0\]"),
    ([["a"]], r"compound_tokens\[0\]"),
    ([[1.5]], r"compound_tokens\[0\]"),
    ([[[1, 2], [1.0, 3.0]]], r"compound_tokens\[0\].*tuple"),          # a list where a tuple belongs
])
def test_bad_compound_tokens(bert_dir, compound, match):
    with pytest.raises((ValueError, TypeError), match=match):
        kexue.build_transformer_model(bert_dir, keep_tokens=[0, 5, 7, 9, 11, 50, 100], compound_tokens=compound)


@pytest.mark.parametrize("keep,match", [([-1, 3], r"keep_tokens.*-1"), ([0, 101], r"keep_tokens.*101.*\[0, 101\)"),
                                        ([3, 5, 3], r"keep_tokens.*duplicate.*3"), ([], "keep_tokens"),
                                        ("abc", "keep_tokens"), ([1.0, 2.0], "keep_tokens"), ([True], "keep_tokens")])
def test_bad_keep_tokens(bert_dir, keep, match):
    with pytest.raises((ValueError, TypeError), match=match):
        kexue.build_transformer_model(bert_dir, keep_tokens=keep)
    with pytest.raises((ValueError, TypeError), match=match):       # checked without a checkpoint too
        kexue.build_transformer_model(config=bert_dir, keep_tokens=keep)


def test_keep_tokens_accepts_numpy_and_tensors(bert_dir):
    import numpy as np
    ref = kexue.build_transformer_model(bert_dir, keep_tokens=[0, 5, 7])
    for keep in (np.array([0, 5, 7]), torch.tensor([0, 5, 7])):
        m = kexue.build_transformer_model(bert_dir, keep_tokens=keep)
        assert torch.equal(m.embeddings.word.weight, ref.embeddings.word.weight)


# ---- issue 8: corrupt files -----------------------------------------------------------------------------------
def _weights_dir(bert_dir, tmp_path, name, data: bytes):
    d = tmp_path / "c"
    os.makedirs(d, exist_ok=True)
    (d / name).write_bytes(data)
    with open(os.path.join(bert_dir, "config.json")) as f:
        (d / "config.json").write_text(f.read())
    return str(d)


def _bin_bytes(bert_dir, tmp_path):
    torch.save(load_file(os.path.join(bert_dir, "model.safetensors")), tmp_path / "ok.bin")
    return (tmp_path / "ok.bin").read_bytes()


# A zeroed data tail of a foreign safetensors file is valid data (the format has no checksum): not in the list.
@pytest.mark.parametrize("name, corrupt", [(n, c) for n in ("model.safetensors", "pytorch_model.bin")
                                           for c in ("empty", "half", "zero_tail", "text", "json")
                                           if (n, c) != ("model.safetensors", "zero_tail")])
def test_corrupt_weights_file_is_a_checkpoint_error(bert_dir, tmp_path, name, corrupt):
    raw = (open(os.path.join(bert_dir, "model.safetensors"), "rb").read() if name.endswith("safetensors")
           else _bin_bytes(bert_dir, tmp_path))
    data = {"empty": b"", "half": raw[: len(raw) // 2], "zero_tail": raw[:-4096] + bytes(4096),
            "text": b"hello, not weights", "json": b'{"a": 1}'}[corrupt]
    d = _weights_dir(bert_dir, tmp_path, name, data)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")) as info:
        kexue.build_transformer_model(d)
    assert len(str(info.value)) > len(os.path.join(d, name)) + 10       # says what is wrong, not just the name


def test_bin_with_non_tensor_values(bert_dir, tmp_path):
    os.makedirs(tmp_path / "c")
    torch.save({"bert.embeddings.word_embeddings.weight": [1, 2]}, tmp_path / "c" / "pytorch_model.bin")
    d = _weights_dir(bert_dir, tmp_path, "pytorch_model.bin", (tmp_path / "c" / "pytorch_model.bin").read_bytes())
    with pytest.raises(CheckpointError, match=r"word_embeddings\.weight.*list"):
        kexue.build_transformer_model(d)


def test_kexue_saved_checkpoint_detects_flipped_data_bytes(bert_dir, tmp_path):
    """save_pretrained records a digest of the tensors; a flipped byte in the data is caught on load."""
    model = kexue.build_transformer_model(bert_dir)
    model.save_pretrained(str(tmp_path / "m"))
    f = tmp_path / "m" / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-1000] ^= 0x01
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*(digest|checksum)"):
        kexue.build_transformer_model(str(tmp_path / "m"))


def test_save_pretrained_refuses_non_finite_weights(bert_dir, tmp_path):
    model = kexue.build_transformer_model(bert_dir)
    with torch.no_grad():
        model.blocks[1].attn.q.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite.*blocks\.1\.attn\.q\.weight"):
        model.save_pretrained(str(tmp_path / "m"))
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_sharded_checkpoint_in_the_hub_cache_layout_loads(tmp_path, bert_dir):
    """snapshots/<rev>/<shard> -> ../../blobs/<sha> (how huggingface_hub stores files) is not an escape."""
    d, state, wm = _shard(bert_dir, tmp_path / "src")
    snap = tmp_path / "models--x--y" / "snapshots" / "abc"
    blobs = tmp_path / "models--x--y" / "blobs"
    os.makedirs(snap)
    os.makedirs(blobs)
    for name in os.listdir(d):
        os.replace(d / name, blobs / ("sha-" + name))
        os.symlink(os.path.join("..", "..", "blobs", "sha-" + name), snap / name)
    loaded = kexue.models.read_state_dict(str(snap))
    assert all(torch.equal(loaded[k], state[k]) for k in state) and set(loaded) == set(state)


def test_save_pretrained_removes_temp_files_of_a_killed_save(bert_dir, tmp_path):
    model = kexue.build_transformer_model(bert_dir)
    os.makedirs(tmp_path / "m")
    for stale in (".tmp-model.safetensorsab12", ".tmp-config.jsoncd34"):
        (tmp_path / "m" / stale).write_bytes(b"\0" * 100)
    (tmp_path / "m" / "notes.txt").write_text("kept")
    model.save_pretrained(str(tmp_path / "m"))
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "model.safetensors", "notes.txt"]


def test_bin_with_a_flipped_data_byte_is_refused(bert_dir, tmp_path):
    """torch.load never checks the zip's CRC-32s; a flipped weight byte used to load silently."""
    state = load_file(os.path.join(bert_dir, "model.safetensors"))
    raw = bytearray(_bin_bytes(bert_dir, tmp_path))
    key = "bert.encoder.layer.0.output.dense.weight"
    at = bytes(raw).find(state[key].numpy().tobytes()[:64])
    assert at > 0
    raw[at + 10] ^= 0x40
    d = _weights_dir(bert_dir, tmp_path, "pytorch_model.bin", bytes(raw))
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*CRC"):
        kexue.build_transformer_model(d)

"""Property tests of `build_transformer_model` (issue 8): generated configs of every registered family, with
valid and invalid values for each field, give a model whose forward is finite or a clear error naming the
field; generated corruptions of a saved checkpoint give a clear error naming the file or a key, or load
weights bitwise equal to the saved ones (never a silent wrong load)."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

import kexue
from kexue.models.config import HF_KEYS
from tests.property.clear_error import assert_finite, valid_or_clear_error

BERT_LIKE = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                 max_position_embeddings=16, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, pad_token_id=0, tie_word_embeddings=True)
GPT_LIKE = dict(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=16, n_inner=None, layer_norm_epsilon=1e-5,
                resid_pdrop=0.1, attn_pdrop=0.1, tie_word_embeddings=True)
BASES = {
    "bert": BERT_LIKE, "roberta": dict(BERT_LIKE, pad_token_id=1), "electra": dict(BERT_LIKE, embedding_size=8),
    "albert": dict(BERT_LIKE, embedding_size=8, num_hidden_groups=1), "nezha": dict(BERT_LIKE, max_relative_position=8),
    "roformer": dict(BERT_LIKE, rotary_value=False), "gpt2": dict(GPT_LIKE, activation_function="gelu_new"),
    "gpt": dict(GPT_LIKE, afn="gelu"),
    "t5": dict(vocab_size=40, d_model=16, d_kv=8, d_ff=20, num_layers=1, num_heads=2, num_decoder_layers=1,
               relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="relu",
               layer_norm_epsilon=1e-6, dropout_rate=0.1, pad_token_id=0, decoder_start_token_id=0, eos_token_id=1,
               tie_word_embeddings=True),
}
FIELD_OF = {hf: field for field, keys in HF_KEYS.items() for hf in keys}

VALUES = st.one_of(
    st.integers(-3, 48), st.sampled_from([0, 1, 2, 3, 4, 5, 10 ** 9, 2 ** 40, -(2 ** 31)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.5, 1.0, -1.0, 1e-6, 1e8, 16.0]),
    st.booleans(), st.none(), st.sampled_from(["16", "gelu", "relu", "gated-gelu", "tanh", "no", "", "swish"]),
    st.just([16]), st.just({"a": 1}))


def _names(key: str) -> tuple[str, ...]:
    return (key, FIELD_OF.get(key, key), "model_type", "max_position", "sequence length", "input_ids", "config")


def _forward(model, cfg):
    """A short forward on ids that are not the pad id; every float output must be finite."""
    n = 12 if not cfg.max_position else max(1, min(12, cfg.max_position - (cfg.pad_token_id or 0) - 1))
    ids = (torch.arange(n) % max(cfg.vocab_size - 1, 1) + (1 if cfg.vocab_size > 1 else 0))[None]
    with torch.no_grad():
        out = model(ids, decoder_input_ids=ids) if cfg.position == "relative_t5" else model(ids)
    assert_finite(out.last_hidden_state, out.logits)


@pytest.mark.timeout(120)
@settings(max_examples=250)
@given(family=st.sampled_from(sorted(BASES)), data=st.data())
def test_generated_config_builds_a_finite_model_or_names_the_field(family, data):
    base = BASES[family]
    changes = data.draw(st.dictionaries(st.sampled_from(sorted(base)), VALUES, min_size=1, max_size=2))
    hf = {"model_type": family, **base, **changes}
    names = tuple(n for key in changes for n in _names(key))
    with valid_or_clear_error(*names):
        model = kexue.build_transformer_model(config=hf, with_mlm=family != "t5").eval()
        _forward(model, model.config)


@pytest.mark.timeout(60)
@settings(max_examples=60)
@given(family=st.sampled_from(sorted(BASES)), drop=st.data())
def test_missing_required_key_names_it(family, drop):
    base = BASES[family]
    key = drop.draw(st.sampled_from(sorted(base)))
    hf = {"model_type": family, **{k: v for k, v in base.items() if k != key}}
    with valid_or_clear_error(key):             # either a default applies, or the error names the key
        model = kexue.build_transformer_model(config=hf).eval()
        _forward(model, model.config)


# ---- corrupted checkpoints ------------------------------------------------------------------------------------
class Saved(tuple):
    def __repr__(self) -> str:             # hypothesis prints the arguments of a failing case
        return f"Saved({self[0]!r})"


@pytest.fixture(scope="module")
def saved():
    """A tiny BERT saved by kexue: (directory, weights file bytes, config bytes, reference state)."""
    torch.manual_seed(0)
    model = kexue.build_transformer_model(config=dict(BERT_LIKE, model_type="bert"), with_mlm=True)
    folder = tempfile.mkdtemp(prefix="kexue-prop-")
    model.save_pretrained(folder)
    with open(os.path.join(folder, "model.safetensors"), "rb") as f, open(os.path.join(folder, "config.json"), "rb") as g:
        weights, config = f.read(), g.read()
    with safe_open(os.path.join(folder, "model.safetensors"), framework="pt") as f:
        torch.save({k: f.get_tensor(k) for k in f.keys()}, os.path.join(folder, "pytorch_model.bin"))
    with open(os.path.join(folder, "pytorch_model.bin"), "rb") as f:
        weights = {"model.safetensors": weights, "pytorch_model.bin": f.read()}
    yield Saved((folder, weights, config, {k: v.clone() for k, v in model.state_dict().items()}))
    shutil.rmtree(folder)


def _rewrite(path, edit, keep_metadata):
    with safe_open(path, framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(edit(state), path, metadata=meta if keep_metadata else {"format": "pt"})


def _check(folder, ref, extra_names=()):
    """Load: a clear error naming the file or a key, or weights bitwise equal to the saved ones."""
    keys = tuple(ref) + tuple(extra_names)
    with valid_or_clear_error("model.safetensors", "pytorch_model.bin", "config", *keys):
        model = kexue.build_transformer_model(folder, with_mlm=True)
        got = model.state_dict()
        assert set(got) == set(ref)
        for k, v in ref.items():
            assert got[k].dtype == v.dtype and torch.equal(got[k], v), f"silently loaded a different {k}"


@pytest.mark.timeout(120)
@settings(max_examples=200)
@given(name=st.sampled_from(["model.safetensors", "pytorch_model.bin"]),
       kind=st.sampled_from(["truncate", "flip", "zero_run", "append"]), where=st.floats(0, 1, exclude_max=True),
       bits=st.integers(1, 255), length=st.integers(1, 64))
def test_byte_level_corruption_is_caught(saved, tmp_path_factory, name, kind, where, bits, length):
    folder, weights, config, ref = saved
    d = tmp_path_factory.mktemp("c")
    pos = int(where * len(weights[name]))
    data = bytearray(weights[name])
    if kind == "truncate":
        data = data[:pos]
    elif kind == "flip":
        data[pos] ^= bits
    elif kind == "zero_run":
        data[pos:pos + length] = bytes(len(data[pos:pos + length]))
    else:
        data += bytes([bits]) * length
    (d / name).write_bytes(bytes(data))
    (d / "config.json").write_bytes(config)
    _check(str(d), ref)


@pytest.mark.timeout(120)
@settings(max_examples=100)
@given(kind=st.sampled_from(["delete", "shape", "int_dtype", "half_dtype", "nan", "inf", "rename", "extra"]),
       pick=st.integers(0, 10 ** 6), keep_metadata=st.booleans())
def test_tensor_level_corruption_is_caught(saved, tmp_path_factory, kind, pick, keep_metadata):
    folder, weights, config, ref = saved
    d = tmp_path_factory.mktemp("c")
    (d / "model.safetensors").write_bytes(weights["model.safetensors"])
    (d / "config.json").write_bytes(config)
    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        keys = sorted(f.keys())
    key = keys[pick % len(keys)]

    def edit(state):
        t = state[key]
        if kind == "delete":
            del state[key]
        elif kind == "shape":
            state[key] = torch.zeros(t.numel() + 1)
        elif kind == "int_dtype":
            state[key] = t.to(torch.int32)
        elif kind == "half_dtype":
            state[key] = t.half()
        elif kind in ("nan", "inf"):
            state[key] = t.clone()
            state[key].view(-1)[pick % t.numel()] = math.nan if kind == "nan" else -math.inf
        elif kind == "rename":
            state[key + "_x"] = state.pop(key)
        else:
            state["bert.extra.weight"] = torch.ones(2)
        return state

    _rewrite(str(d / "model.safetensors"), edit, keep_metadata)
    if kind == "half_dtype" and not keep_metadata:
        # a float16 copy is a legitimate checkpoint: it must load as the rounded values, nothing else
        got = kexue.build_transformer_model(str(d), with_mlm=True).state_dict()
        changed = [k for k in ref if not torch.equal(got[k], ref[k])]
        rounded = [k for k in changed if torch.equal(got[k], ref[k].half().float())]
        assert changed == rounded and len(changed) <= 1, changed
        return
    _check(str(d), ref, extra_names=(key, "bert.extra.weight"))


@pytest.mark.timeout(120)
@settings(max_examples=80)
@given(kind=st.sampled_from(["truncate", "flip", "value"]), where=st.floats(0, 1, exclude_max=True),
       bits=st.integers(1, 255), value=st.one_of(st.integers(-5, 100), st.floats(), st.text(max_size=3)))
def test_config_corruption_is_valid_or_clear(saved, tmp_path_factory, kind, where, bits, value):
    """A corrupted config.json: a clear error (naming config.json or the key), or a model that loads."""
    folder, weights, config, ref = saved
    d = tmp_path_factory.mktemp("c")
    (d / "model.safetensors").write_bytes(weights["model.safetensors"])
    pos = int(where * len(config))
    if kind == "truncate":
        data = config[:pos]
    elif kind == "flip":
        data = bytearray(config)
        data[pos] ^= bits
        data = bytes(data)
    else:
        hf = json.loads(config)
        key = sorted(hf)[pos % len(hf)]
        hf[key] = value
        data = json.dumps(hf).encode()
    (d / "config.json").write_bytes(data)
    with valid_or_clear_error("config", "checkpoint does not fit", "model.safetensors", *json.loads(config), *ref):
        model = kexue.build_transformer_model(str(d), with_mlm=True).eval()
        _forward(model, model.config)

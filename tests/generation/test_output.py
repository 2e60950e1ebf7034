"""One return type (GenerationOutput) for greedy, beam search and sampling, and one protocol for every
generating family: shapes, padding after the end token, sample order, end_id semantics, a new family."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import kexue
from kexue.generation import GenerationOutput, generate
from kexue.models.decoding import CachedDecodingMixin, DecodingModel, DecodingPrompt
from kexue.nn import KVCache

V, EOS, PAD = 30, 7, 4


def _wide(model):
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.5)
    return model.eval()


@pytest.fixture(scope="module")
def gpt2():
    return _wide(kexue.build_transformer_model(config=dict(
        model_type="gpt2", vocab_size=V, n_embd=16, n_layer=1, n_head=2, n_positions=32, eos_token_id=EOS,
        pad_token_id=PAD)))


def _end_row0_at_step(step: int, end: int):
    """allowed_next forcing the end token on input 0 at `step` (0-based) and banning it everywhere else."""
    def allowed(output_ids, batch_index):
        a = torch.ones(output_ids.shape[0], V, dtype=torch.bool)
        a[:, end] = False
        if output_ids.shape[1] == step:
            a[batch_index == 0] = False
            a[batch_index == 0, end] = True
        return a
    return allowed


@pytest.mark.parametrize("mode", ["greedy", "beam", "sample"])
def test_one_return_type_padded_after_the_end_token(gpt2, mode):
    ids = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(0))
    kw = {"greedy": {}, "beam": dict(num_beams=2), "sample": dict(do_sample=True, num_samples=2, seed=0)}[mode]
    out = generate(gpt2, ids, max_new_tokens=6, allowed_next=_end_row0_at_step(2, EOS), **kw)
    R = 3 * (2 if mode == "sample" else 1)
    width = 2 if mode == "sample" else 1
    assert isinstance(out, GenerationOutput)
    assert out.sequences.dtype == torch.long and out.sequences.shape == (R, 6)
    assert out.lengths.tolist() == [3] * width + [6] * (R - width)            # input 0 ends at its 3rd token
    assert (out.sequences[:width, 2] == EOS).all() and (out.sequences[:width, 3:] == PAD).all()
    assert not (out.sequences[width:] == EOS).any()
    assert out.scores.shape == (R,) and out.scores.dtype == torch.float32 and torch.isfinite(out.scores).all()
    assert [len(s) for s in out.trimmed()] == out.lengths.tolist()


def test_samples_of_one_input_are_adjacent(gpt2):
    """topk=1 sampling is greedy: rows b * n .. b * n + n - 1 all equal input b's greedy continuation."""
    ids = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(1))
    greedy = generate(gpt2, ids, max_new_tokens=5, stop_at_eos=False).sequences
    samples = generate(gpt2, ids, max_new_tokens=5, stop_at_eos=False, do_sample=True, num_samples=4, topk=1,
                       seed=0).sequences
    assert len({tuple(r) for r in greedy.tolist()}) == 3                          # the inputs differ
    assert torch.equal(samples, greedy.repeat_interleave(4, 0))


def test_end_id_none_is_the_configs_and_stop_at_eos_false_runs_to_the_end(gpt2):
    ids = torch.randint(0, V, (2, 3), generator=torch.Generator().manual_seed(2))
    force = _end_row0_at_step(1, EOS)
    assert generate(gpt2, ids, max_new_tokens=5, allowed_next=force).lengths.tolist() == [2, 5]
    assert generate(gpt2, ids, max_new_tokens=5, allowed_next=force, stop_at_eos=False).lengths.tolist() == [5, 5]
    other = _end_row0_at_step(1, 3)
    assert generate(gpt2, ids, max_new_tokens=5, allowed_next=other, end_id=3).lengths.tolist() == [2, 5]
    with pytest.raises(ValueError, match=r"end_id=-1 no longer"):
        generate(gpt2, ids, end_id=-1)
    with pytest.raises(ValueError, match=r"end_id=30 .*\[0, 29\]|end_id"):
        generate(gpt2, ids, end_id=V)
    with pytest.raises(ValueError, match=r"end_id=3 with stop_at_eos=False"):
        generate(gpt2, ids, end_id=3, stop_at_eos=False)
    with pytest.raises(TypeError, match="stop_at_eos"):
        generate(gpt2, ids, stop_at_eos="no")


def test_a_config_without_eos_runs_to_max_new_tokens():
    model = _wide(kexue.build_transformer_model(config=dict(model_type="gpt2", vocab_size=V, n_embd=16, n_layer=1,
                                                            n_head=2, n_positions=32)))
    out = generate(model, torch.tensor([[1, 2]]), max_new_tokens=4)
    assert out.lengths.tolist() == [4] and out.sequences.shape == (1, 4)


def test_every_generating_family_implements_the_protocol(tmp_path):
    small = dict(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    models = [kexue.build_transformer_model(config=dict(model_type="gpt2", vocab_size=V, n_embd=16, n_layer=1,
                                                        n_head=2, n_positions=32)),
              kexue.build_transformer_model(config=dict(model_type="openai-gpt", vocab_size=V, n_embd=16,
                                                        n_layer=1, n_head=2, n_positions=32)),
              kexue.build_transformer_model(config=dict(model_type="bert", **small), application="lm",
                                            with_mlm=True),
              kexue.build_transformer_model(config=dict(model_type="bert", **small), application="unilm",
                                            with_mlm=True),
              kexue.build_transformer_model(config=dict(model_type="t5", vocab_size=V, d_model=16, d_kv=8, d_ff=16,
                                                        num_layers=1, num_heads=2))]
    for model in models:
        assert isinstance(model, DecodingModel), type(model).__name__
        cache = model.setup_caches(2, 5)
        assert model.caches_are_enabled() and model.kv_cache is cache and cache.batch_size == 2
        assert model.setup_caches(2, 5) is cache                                   # same shape: reused, reset
        model.reset_caches()
        assert int(cache.cache_pos) == 0
        assert not any(k.startswith("kv_cache") for k in model.state_dict())      # never saved
        model.teardown_caches()
        assert not model.caches_are_enabled()


class BigramLM(CachedDecodingMixin, nn.Module):
    """A family generation has never seen: logits = table[last token]. It implements the protocol and
    nothing in kexue.generation changes."""

    def __init__(self):
        super().__init__()
        self.config = type("Cfg", (), dict(vocab_size=V, eos_token_id=None, pad_token_id=None))()
        self.table = nn.Parameter(torch.randn(V, V, generator=torch.Generator().manual_seed(3)))

    def default_attention_mask(self, input_ids):
        return None

    def max_length(self):
        return None

    def position_offset(self):
        return 0

    def make_cache(self, batch_size, max_len, dtype=None):
        return KVCache(1, batch_size, 1, max_len, 1, dtype=dtype or self.table.dtype)

    def prepare_decoding(self, input_ids, attention_mask, segment_ids=None, *, max_new_tokens, new_segment=None,
                         decoder_start_id=None):
        return DecodingPrompt({"input_ids": input_ids}, start_id=None, decoder_len=input_ids.shape[1])

    def prefill(self, rows, output_ids, extra):
        return self.table[rows["input_ids"][:, -1]]

    def decode_step(self, tokens):
        return self.table[tokens[:, -1]]

    def logits_without_cache(self, rows, output_ids, extra):
        return self.table[output_ids[:, -1]] if output_ids.shape[1] else self.prefill(rows, output_ids, extra)


def test_a_new_family_needs_no_edit_in_generation():
    model = BigramLM()
    out = generate(model, torch.tensor([[1], [2]]), max_new_tokens=4)
    expect = []
    for start in (1, 2):
        row, tok = [], start
        for _ in range(4):
            tok = int(model.table[tok].argmax())
            row.append(tok)
        expect.append(row)
    assert out.sequences.tolist() == expect
    assert torch.equal(generate(model, torch.tensor([[1], [2]]), max_new_tokens=4, use_cache=False).sequences,
                       out.sequences)
    with pytest.raises(TypeError, match="DecodingModel"):
        generate(nn.Linear(2, 2), torch.tensor([[1]]))


def test_the_cache_generate_leaves_can_be_set_up_again_outside_inference_mode(gpt2):
    """generate allocates the cache under inference_mode; a later setup outside it must not reuse those
    inference tensors (an in-place update on them would raise)."""
    generate(gpt2, torch.tensor([[1, 2]]), max_new_tokens=2)
    cache = gpt2.setup_caches(1, 3)
    assert not cache.keys(0).is_inference()
    with torch.no_grad():
        gpt2(torch.tensor([[1, 2]]), cache=cache)
    assert cache.length == 2


def test_decoder_beam_width_is_num_beams_with_topk_as_the_bert4keras_alias():
    from kexue.generation import AutoRegressiveDecoder
    table = torch.randn(6, 6, generator=torch.Generator().manual_seed(4))
    dec = AutoRegressiveDecoder(None, 0, 4, predict=lambda i, o, s: table[o[:, -1] if o.shape[1] else i[0]])
    x = [torch.tensor([1, 2])]
    a = dec.beam_search(x, num_beams=3)
    assert [s.tolist() for s in a] == [s.tolist() for s in dec.beam_search(x, topk=3)]
    assert [s.tolist() for s in a] == [s.tolist() for s in dec.beam_search(x, 3)]
    with pytest.raises(ValueError, match="num_beams=3 or its bert4keras alias topk=2"):
        dec.beam_search(x, num_beams=3, topk=2)
    with pytest.raises(ValueError, match="num_beams"):
        dec.beam_search(x, num_beams=0)

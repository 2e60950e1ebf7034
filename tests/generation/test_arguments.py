"""Bad generation arguments give a clear error naming the argument, before anything is allocated (issue 8);
good ones at the edge of a limit still work."""
import itertools
import math

import pytest
import torch

import kexue
from kexue.generation import AutoRegressiveDecoder, apply_temperature, generate, repetition_penalty, top_p_filter

from .toy import markov_predict, markov_tables

V = 50
EOS = 5


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    return kexue.build_transformer_model(config=dict(model_type="gpt2", vocab_size=V, n_embd=16, n_layer=1, n_head=2,
                                                     n_positions=64, eos_token_id=EOS)).eval()


@pytest.fixture(scope="module")
def t5():
    torch.manual_seed(0)
    return kexue.build_transformer_model(config=dict(model_type="t5", vocab_size=V, d_model=16, d_kv=8, d_ff=16,
                                                     num_layers=1, num_heads=2, decoder_start_token_id=0,
                                                     eos_token_id=1)).eval()


def _ids(B=2, n=3):
    return torch.randint(6, V, (B, n), generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------- generate(): numbers and ids
@pytest.mark.parametrize("kw,name,err", [
    (dict(num_beams=2, length_penalty=float("nan")), "length_penalty", ValueError),
    (dict(num_beams=2, length_penalty=float("inf")), "length_penalty", ValueError),
    (dict(num_beams=2, length_penalty=1e5), "length_penalty", ValueError),
    (dict(num_beams=-3), "num_beams", ValueError),
    (dict(num_beams=0), "num_beams", ValueError),
    (dict(num_beams=2.0), "num_beams", TypeError),
    (dict(end_id=10**6), "end_id", ValueError),
    (dict(end_id=V), "end_id", ValueError),
    (dict(end_id=-2), "end_id", ValueError),
    (dict(banned_ids=[1.5]), "banned_ids", TypeError),
    (dict(banned_ids=[V]), "banned_ids", ValueError),
    (dict(max_new_tokens=1e12), "max_new_tokens", TypeError),
    (dict(max_new_tokens=10**12), "max_new_tokens", ValueError),
    (dict(max_new_tokens=4, min_new_tokens=5), "min_new_tokens", ValueError),
    (dict(temperature=float("inf")), "temperature", ValueError),
    (dict(temperature=0.0), "temperature", ValueError),
    (dict(repetition_penalty=float("inf")), "repetition_penalty", ValueError),
    (dict(repetition_penalty=float("nan")), "repetition_penalty", ValueError),
    (dict(do_sample=True, num_samples=0), "num_samples", ValueError),
    (dict(do_sample=True, topp=float("nan")), "topp", ValueError),
    (dict(do_sample=True, topk=2.5), "topk", TypeError),
    (dict(do_sample="yes"), "do_sample", TypeError),
    (dict(new_segment=V), "new_segment", ValueError),
    (dict(min_ends=0), "min_ends", ValueError),
])
def test_generate_names_the_bad_argument(gpt2, kw, name, err):
    with pytest.raises(err, match=name):
        generate(gpt2, _ids(), **kw)


def test_max_new_tokens_is_checked_against_the_position_table_first(gpt2):
    """1e7 new tokens on a 64-position GPT-2 used to fill 5 GB and decode 61 steps before failing."""
    with pytest.raises(ValueError, match=r"max_new_tokens=10000000 .*length 3.*max_position=64.*<= 62"):
        generate(gpt2, _ids(n=3), max_new_tokens=10**7)
    with pytest.raises(ValueError, match="max_new_tokens=63"):
        generate(gpt2, _ids(n=3), max_new_tokens=63)
    out = generate(gpt2, _ids(n=3), max_new_tokens=62, stop_at_eos=False)       # the last position is exactly filled
    assert [len(s) for s in out.trimmed()] == [62, 62]
    with pytest.raises(ValueError, match="max_new_tokens=1 .*length 65.*shorter prompt"):
        generate(gpt2, _ids(n=65), max_new_tokens=1)                       # the prompt alone is too long


def test_models_without_a_position_table_are_capped_by_memory(t5):
    """T5's relative positions have no table: only memory bounds max_new_tokens (RoFormer's rotary table is a
    position limit: tests/generation/test_generate_padding.py)."""
    with pytest.raises(ValueError, match=r"max_new_tokens=1000000000000 .*GiB"):
        generate(t5, _ids(), max_new_tokens=10**12)
    out = generate(t5, _ids(), max_new_tokens=70, stop_at_eos=False)
    assert len(out.trimmed()[0]) == 70                                          # no table: 70 > 64 is fine


def test_a_model_without_lm_head_is_refused():
    model = kexue.build_transformer_model(config=dict(model_type="roformer", vocab_size=V, hidden_size=16,
                                                      num_hidden_layers=1, num_attention_heads=2,
                                                      intermediate_size=16), application="lm")
    with pytest.raises(ValueError, match="with_mlm"):
        generate(model, _ids())


def test_t5_decoder_start_id_outside_the_vocabulary(t5):
    with pytest.raises(ValueError, match="decoder_start_id"):
        generate(t5, _ids(), decoder_start_id=10**6)


@pytest.mark.parametrize("mask,match", [
    (torch.tensor([[1, 1, 0], [1, 0.4, 1]]), "0 \\(padding\\) or 1"),
    (torch.tensor([[1, -1, 1], [1, 1, 1]]), "0 \\(padding\\) or 1"),
    (torch.tensor([[1, 1, 1], [0, 0, 0]]), "no real token"),
])
def test_attention_mask_values_and_empty_prompts(gpt2, mask, match):
    with pytest.raises(ValueError, match=match):
        generate(gpt2, _ids(), attention_mask=mask)


def test_prompt_dtype_and_vocabulary(gpt2):
    with pytest.raises(TypeError, match="input_ids"):
        generate(gpt2, _ids().float())
    with pytest.raises(ValueError, match="input_ids"):
        generate(gpt2, _ids() + V)
    with pytest.raises(ValueError, match="input_ids"):
        generate(gpt2, _ids()[:0])                                                 # batch 0


def test_roberta_unilm_counts_positions_from_padding_idx_plus_one():
    """RoBERTa's positions start at pad_token_id + 1: cached generation must equal the model's own
    full forward (default positions), and the table limit includes that offset."""
    torch.manual_seed(0)
    model = kexue.build_transformer_model(
        config=dict(model_type="roberta", vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=16, max_position_embeddings=20, pad_token_id=1, type_vocab_size=2),
        application="unilm", with_mlm=True).eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
            torch.nn.init.normal_(m.weight, std=0.5)
    ids = _ids(B=1, n=4)
    out = generate(model, ids, segment_ids=torch.zeros_like(ids), max_new_tokens=6, stop_at_eos=False).trimmed()[0]
    seq = ids.clone()
    with torch.no_grad():
        for _ in range(6):                                                          # reference: full recompute
            seg = (torch.arange(seq.shape[1]) >= 4).long()[None]
            seq = torch.cat([seq, model(seq, segment_ids=seg).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert out.tolist() == seq[0, 4:].tolist()
    # 20 positions from offset 2: a 4-token prompt leaves room for 15 new tokens
    assert len(generate(model, ids, segment_ids=torch.zeros_like(ids), max_new_tokens=15,
                        stop_at_eos=False).trimmed()[0]) == 15
    with pytest.raises(ValueError, match="max_new_tokens=16"):
        generate(model, ids, segment_ids=torch.zeros_like(ids), max_new_tokens=16)


# ------------------------------------------------------------------------------- AutoRegressiveDecoder
def test_decoder_ids_must_be_in_the_vocabulary_of_predict():
    tables = markov_tables(2, 4)
    with pytest.raises(ValueError, match="end_id"):
        AutoRegressiveDecoder(None, 10**6, 3, predict=markov_predict(tables)).greedy([torch.arange(2)])
    with pytest.raises(ValueError, match="start_id"):
        AutoRegressiveDecoder(7, 0, 3, predict=lambda i, o, s: torch.zeros(o.shape[0], 4)).greedy([torch.arange(2)])
    with pytest.raises(ValueError, match="minlen"):
        AutoRegressiveDecoder(None, 0, maxlen=3, minlen=4)
    with pytest.raises(TypeError, match="maxlen"):
        AutoRegressiveDecoder(None, 0, maxlen=3.0)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_decoder_refuses_nan_or_plus_inf_scores(bad):
    def predict(inputs, output_ids, states):
        s = torch.zeros(output_ids.shape[0], 4)
        s[0, 1] = bad
        return s
    dec = AutoRegressiveDecoder(None, 0, 3, predict=predict)
    for run in (lambda: dec.greedy([torch.zeros(2)]), lambda: dec.beam_search([torch.zeros(2)], 2),
                lambda: dec.random_sample([torch.zeros(2)], 2, seed=0)):
        with pytest.raises(ValueError, match=r"NaN or \+inf"):
            run()


def test_strong_negative_length_penalty_keeps_an_exact_search():
    """score / 4**-70 overflowed float32: every length-4 beam ranked -inf and the search returned an empty
    sequence with score -inf. With minlen = maxlen = 4 every candidate has length 4, so the answer is the
    most probable length-4 sequence without an early end (brute force), the end token banned (renormalised
    away) at the first three steps."""
    tables = markov_tables(1, 3, seed=2)
    dec = AutoRegressiveDecoder(None, 0, 4, minlen=4, predict=markov_predict(tables))
    seqs, scores = dec.beam_search([torch.arange(1)], 27, length_penalty=-70.0, return_scores=True)
    def logprob(seq):
        prev, total = 3, 0.0
        for t, tok in enumerate(seq):
            row = tables[0, prev].double().clone()
            if t < 3:
                row[0] = -math.inf                                                  # end banned before minlen
            total, prev = total + float(row.log_softmax(-1)[tok]), tok
        return total

    best = max((s for s in itertools.product(range(3), repeat=4) if 0 not in s[:3]), key=logprob)
    assert seqs[0].tolist() == list(best)
    assert scores[0].item() == pytest.approx(logprob(best), abs=1e-4)


@pytest.mark.parametrize("kw,name", [(dict(temperature=1e-45), "temperature"),
                                     (dict(repetition_penalty=-1.0), "repetition_penalty"),
                                     (dict(banned_ids=[True]), "banned_ids"),
                                     (dict(callback=3), "callback"),
                                     (dict(seed=1.5), "seed")])
def test_sampling_hooks_are_checked(kw, name):
    dec = AutoRegressiveDecoder(None, None, 2, predict=lambda i, o, s: torch.tensor([[3.0, 1.0, 0.0]]).expand(
        o.shape[0], 3))
    with pytest.raises((ValueError, TypeError), match=name):
        dec.random_sample([torch.zeros(1)], 2, **kw)


def test_decoder_names_predict_and_allowed_next_when_they_return_nonsense():
    x = [torch.zeros(2)]
    for bad in ((torch.zeros(2, 3), None, None), [[0.0, 1.0]] * 2):
        with pytest.raises((ValueError, TypeError), match="predict"):
            AutoRegressiveDecoder(None, 0, 2, predict=lambda i, o, s, bad=bad: bad).greedy(x)
    dec = AutoRegressiveDecoder(None, 0, 2, predict=lambda i, o, s: torch.zeros(o.shape[0], 3))
    for allowed in (lambda o, b: torch.ones(o.shape[0], 4, dtype=torch.bool), lambda o, b: [[True] * 3] * 2):
        with pytest.raises(ValueError, match="allowed_next"):
            dec.greedy(x, allowed_next=allowed)


def test_decoder_output_buffer_is_checked_against_memory():
    dec = AutoRegressiveDecoder(None, 0, 10**13, predict=lambda i, o, s: torch.zeros(o.shape[0], 3))
    with pytest.raises(ValueError, match="maxlen=10000000000000.*GiB"):
        dec.greedy([torch.zeros(2)])


# ------------------------------------------------------------------------------- logits processors
def test_logits_processors_refuse_nan_scores():
    nan = torch.tensor([[0.0, float("nan"), 1.0]])
    for f in (lambda s: top_p_filter(s, 0.5), lambda s: apply_temperature(s, 0.7)):
        with pytest.raises(ValueError, match="NaN"):
            f(nan)
    with pytest.raises(ValueError, match="previous_ids"):
        repetition_penalty(torch.zeros(1, 3), torch.tensor([[5]]), 1.2)

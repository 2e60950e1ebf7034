"""Property tests for generation (issue 8): `generate` on a tiny GPT-2 and a tiny UniLM BERT, and
`AutoRegressiveDecoder` on a step function that misbehaves, driven with generated arguments.

Each example draws a valid value for every argument and then, at most once, replaces one argument by a bad
value. With no bad argument the result must be valid (shapes, ids in the vocabulary, lengths consistent with
max/min_new_tokens, end_id and banned_ids, finite scores); with one, generate must raise a clear error that
names that argument."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kexue
from kexue.generation import AutoRegressiveDecoder, GenerationOutput, generate
from tests.property.clear_error import CLEAR, assert_finite, valid_or_clear_error

V, POSITIONS, EOS = 40, 16, 7
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    gpt2 = kexue.build_transformer_model(config=dict(model_type="gpt2", vocab_size=V, n_embd=16, n_layer=1, n_head=2,
                                                     n_positions=POSITIONS, eos_token_id=EOS)).eval()
    unilm = kexue.build_transformer_model(config=dict(model_type="bert", vocab_size=V, hidden_size=16,
                                                      num_hidden_layers=1, num_attention_heads=2,
                                                      intermediate_size=16, max_position_embeddings=POSITIONS),
                                          application="unilm", with_mlm=True).eval()
    for model in (gpt2, unilm):                       # wide weights: varied tokens, some rows end early
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(m.weight, std=0.5)
    return {"gpt2": gpt2, "unilm": unilm}


# bad values per argument: wrong type, NaN / inf, out of range, out of the vocabulary, past a limit
BAD = {
    "max_new_tokens": [0, -3, 2.0, 1e12, "4", True, None, POSITIONS + 1, 10**7, 10**12],
    "min_new_tokens": [-1, 1.5, 10**3, None],
    "num_beams": [0, -3, 2.0, "2", True],
    "num_samples": [0, -1, 1.5],
    "topk": [0, -1, 2.5, "3", True],
    "topp": [0.0, 1.5, NAN, -0.1, "0.5"],
    "temperature": [0.0, -1.0, NAN, INF, None, 1e-45],
    "length_penalty": [NAN, INF, -INF, 1e6, "1"],
    "repetition_penalty": [0.0, -1.0, NAN, INF],
    "end_id": [V, 10**6, -1, -2, 1.5, "a"],                # -1 no longer means "the config's"
    "stop_at_eos": ["yes", 1, None],
    "banned_ids": [[V], [-1], [1.5], list(range(V)), "abc", 5],
    "min_ends": [0, -1, 1.5],
    "seed": [1.5, "x"],
    "new_segment": [-1, V, 2.5],
    "attention_mask": ["0.4", "-1", "empty_row", "shape"],
    "input_ids": ["float", "vocab", "batch0", "1d"],
}


def _make_bad(ids, seg, kw, bad, value):
    """Replace argument `bad` by `value` (the tensor arguments by a named corruption)."""
    kw = dict(kw)
    B, n = ids.shape
    if bad == "num_beams" and kw["do_sample"]:
        kw["do_sample"] = False                      # the value itself must be what is wrong
    if bad == "length_penalty":
        kw["max_new_tokens"] = max(kw["max_new_tokens"], 2)       # 1**length_penalty is 1 for any finite value
    if bad == "temperature" and value == 1e-45:
        kw.update(do_sample=True, num_beams=1)                    # greedy ignores the temperature
    if bad == "attention_mask":
        m = kw["attention_mask"].float()
        if value == "empty_row":
            m[0] = 0
        elif value == "shape":
            m = m[:, :-1] if n > 1 else torch.ones(B, 2)
        else:
            m[0, 0] = float(value)
        kw["attention_mask"] = m
    elif bad == "input_ids":
        ids = {"float": ids.float(), "vocab": ids + V, "batch0": ids[:0], "1d": ids[0]}[value]
        if seg is not None and value in ("batch0", "1d"):
            seg = seg[:0] if value == "batch0" else seg[0]
    else:
        kw[bad] = value
    return ids, seg, kw


@st.composite
def arguments(draw, kind: str, allow_bad: bool = True):
    """(input_ids, segment_ids, kwargs, bad argument name or None): about half the examples have one bad
    argument."""
    B, n = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    ids = torch.randint(0, V, (B, n), generator=g)
    lengths = torch.randint(1, n + 1, (B,), generator=g)
    left = draw(st.booleans())
    pos = torch.arange(n)[None]
    mask = (pos >= n - lengths[:, None]) if left else (pos < lengths[:, None])
    do_sample = draw(st.booleans())
    kw = dict(max_new_tokens=draw(st.integers(1, 8)), num_beams=1 if do_sample else draw(st.integers(1, 3)),
              do_sample=do_sample, num_samples=draw(st.integers(1, 3)),
              topk=draw(st.none() | st.integers(1, V + 5)), topp=draw(st.none() | st.floats(0.05, 1.0)),
              temperature=draw(st.floats(0.2, 5.0)), length_penalty=draw(st.floats(-2.0, 2.0)),
              repetition_penalty=draw(st.floats(0.5, 2.0)), end_id=draw(st.sampled_from([None, 3, EOS])),
              banned_ids=draw(st.none() | st.lists(st.integers(0, V - 1), max_size=4)),
              min_ends=draw(st.integers(1, 2)), seed=draw(st.integers(0, 100)), use_cache=draw(st.booleans()),
              stop_at_eos=draw(st.booleans()), attention_mask=mask.long())
    if not kw["stop_at_eos"]:
        kw["end_id"] = None                          # an end id and stop_at_eos=False together are refused
    kw["min_new_tokens"] = draw(st.integers(0, kw["max_new_tokens"]))
    seg = None
    if kind == "unilm":
        seg = torch.zeros_like(ids)
        kw["new_segment"] = draw(st.sampled_from([None, 1]))
    names = sorted(k for k in BAD if kind == "unilm" or k != "new_segment")
    bad = draw(st.none() | st.sampled_from(names)) if allow_bad and draw(st.booleans()) else None
    if bad is not None:
        ids, seg, kw = _make_bad(ids, seg, kw, bad, draw(st.sampled_from(BAD[bad])))
    return ids, seg, kw, bad


def _check_result(out, ids, kw, model):
    """Valid output: a GenerationOutput with one row per input (sampling: num_samples adjacent rows), padded
    with the pad id after each row's length, every row obeying every constraint."""
    assert isinstance(out, GenerationOutput)
    assert_finite(out.scores)
    R = ids.shape[0] * (kw["num_samples"] if kw["do_sample"] else 1)
    assert out.sequences.dtype == torch.long and out.sequences.shape == (R, int(out.lengths.max()))
    assert out.lengths.shape == (R,) and out.scores.shape == (R,)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    after = torch.arange(out.sequences.shape[1])[None] >= out.lengths[:, None]
    assert (out.sequences[after] == pad).all()
    rows = out.trimmed()
    end = (model.config.eos_token_id if kw["end_id"] is None else kw["end_id"]) if kw["stop_at_eos"] else None
    banned = set(kw["banned_ids"] or ())
    for s in rows:
        assert s.dim() == 1 and s.dtype == torch.long and 1 <= len(s) <= kw["max_new_tokens"]
        toks = s.tolist()
        assert all(0 <= t < V for t in toks) and not banned & set(toks)
        if end is None or end in banned:
            assert len(toks) == kw["max_new_tokens"]
        else:
            if len(toks) < kw["max_new_tokens"]:                                  # stopped: on its min_ends-th end
                assert toks[-1] == end and toks.count(end) == kw["min_ends"]
            assert end not in toks[:max(kw["min_new_tokens"] - 1, 0)]             # end banned before min_new_tokens
            assert toks.count(end) <= kw["min_ends"]


def _run(model, ids, seg, kw, bad):
    names = (bad,) if bad is not None else ("banned_ids",)    # all-banned is only a joint constraint
    raised = True
    with valid_or_clear_error(*names):
        out = generate(model, ids, segment_ids=seg, **kw)
        raised = False
    if bad is not None:
        assert raised, f"bad {bad}={kw.get(bad, '(tensor)')!r} was accepted"
    elif not raised:
        _check_result(out, ids, kw, model)


@pytest.mark.timeout(60)
@given(args=arguments("gpt2"))
def test_gpt2_generate_valid_result_or_clear_error(models, args):
    _run(models["gpt2"], *args)


@pytest.mark.timeout(60)
@given(args=arguments("unilm"))
def test_unilm_generate_valid_result_or_clear_error(models, args):
    _run(models["unilm"], *args)


GRID = [(name, value) for name in BAD for value in BAD[name]]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["gpt2", "unilm"])
@pytest.mark.parametrize("name,value", GRID, ids=[f"{n}={v!r}"[:40] for n, v in GRID])
@settings(max_examples=3)
@given(data=st.data())
def test_every_bad_value_is_a_clear_error_naming_it(models, kind, name, value, data):
    """Each bad value of each argument, on a few generated valid calls: always refused, naming it."""
    if kind == "gpt2" and name == "new_segment" and value == V:
        value = V + 1                                # GPT-2 embeds segments with the word table: V is bad too
    ids, seg, kw, _ = data.draw(arguments(kind, allow_bad=False))
    _run(models[kind], *_make_bad(ids, seg, kw, name, value), name)


@pytest.mark.timeout(60)
@given(fault=st.sampled_from(["nan", "+inf", "all_-inf", "shape", "int", "none"]), step=st.integers(0, 3),
       strategy=st.sampled_from(["greedy", "beam", "sample"]), V_=st.integers(2, 6))
def test_decoder_with_a_misbehaving_step_function(fault, step, strategy, V_):
    """A user predict that returns NaN, +inf, an all -inf row, a wrong shape or ints at some step: a clear
    error naming predict / scores (or banned_ids for a row with no allowed token), never a silent sample."""
    def predict(inputs, output_ids, states):
        N, t = output_ids.shape
        s = torch.linspace(-1, 1, V_).repeat(N, 1) + t
        if t == step and fault != "none":
            if fault == "nan":
                s[0, 0] = NAN
            elif fault == "+inf":
                s[-1, -1] = INF
            elif fault == "all_-inf":
                s[0] = -INF
            elif fault == "shape":
                s = s[:, None, None]
            elif fault == "int":
                s = s.long()
        return s
    dec = AutoRegressiveDecoder(None, None, 4, predict=predict)
    x = [torch.zeros(2)]
    run = {"greedy": lambda: dec.greedy(x, return_scores=True),
           "beam": lambda: dec.beam_search(x, 2, return_scores=True),
           "sample": lambda: dec.random_sample(x, 2, seed=0, return_scores=True)}[strategy]
    try:
        seqs, scores = run()
    except CLEAR as e:
        assert fault != "none" and any(w in str(e) for w in ("predict", "scores", "banned_ids")), e
        return
    assert fault == "none"                                        # every fault hits step <= 3 < maxlen
    assert_finite(scores)
    flat = [s for g in seqs for s in g] if strategy == "sample" else seqs
    assert all(len(s) == 4 and 0 <= int(s.min()) and int(s.max()) < V_ for s in flat)
    assert not math.isnan(float(scores.sum()))

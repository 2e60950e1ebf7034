"""Model-level generation: parity with transformers.generate, cached == recomputed, beam scores, bf16."""
import pytest
import torch
import transformers as T

import kexue
from kexue.generation import generate

V = 101
END = {"gpt2": 54, "t5": 100, "unilm": 99}     # ids these random models do emit, so some rows stop early


@pytest.fixture(scope="module")
def gpt2_pair(tmp_path_factory):
    torch.manual_seed(0)
    cfg = T.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0,
                       embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=END["gpt2"], pad_token_id=0,
                       initializer_range=0.3)     # wide weights: varied generations, not one repeated token
    hf = T.GPT2LMHeadModel(cfg).eval()
    path = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(str(path))
    return hf, kexue.build_transformer_model(checkpoint=str(path)).eval()


@pytest.fixture(scope="module")
def t5_pair(tmp_path_factory):
    torch.manual_seed(0)
    cfg = T.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, dropout_rate=0.0,
                     decoder_start_token_id=0, pad_token_id=0, eos_token_id=END["t5"], initializer_factor=3.0)
    hf = T.T5ForConditionalGeneration(cfg).eval()
    path = tmp_path_factory.mktemp("t5")
    hf.save_pretrained(str(path))
    return hf, kexue.build_transformer_model(checkpoint=str(path)).eval()


@pytest.fixture(scope="module")
def unilm():
    torch.manual_seed(0)
    cfg = dict(model_type="bert", vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)
    model = kexue.build_transformer_model(config=cfg, application="unilm", with_mlm=True).eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
            torch.nn.init.normal_(m.weight, std=0.3)
    return model


def _prompts(B, seed, lo=3, hi=9):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (B,), generator=g)
    n = int(lengths.max())
    ids = torch.randint(2, V, (B, n), generator=g)
    right = torch.arange(n)[None] < lengths[:, None]                               # right-padded mask
    return ids.masked_fill(~right, 0), right.long()


def _cut(row, end):
    row = row.tolist()
    return row[:row.index(end) + 1] if end in row else row


@pytest.mark.parametrize("B,seed", [(1, 0), (3, 1), (5, 2)])
def test_gpt2_greedy_equals_transformers(gpt2_pair, B, seed):
    hf, model = gpt2_pair
    ids, mask = _prompts(B, seed)
    ours = generate(model, ids, attention_mask=mask, max_new_tokens=12).trimmed()  # right-padded input
    left_mask, left_ids = kexue.generation.left_align(mask, ids)
    ref = hf.generate(left_ids, attention_mask=left_mask, max_new_tokens=12, do_sample=False, num_beams=1,
                      pad_token_id=0)[:, ids.shape[1]:]
    assert [s.tolist() for s in ours] == [_cut(r, END["gpt2"]) for r in ref]
    assert len({t for s in ours for t in s.tolist()}) > 3                           # not one repeated token


@pytest.mark.parametrize("B,seed", [(1, 3), (4, 3), (6, 4)])
def test_t5_greedy_equals_transformers(t5_pair, B, seed):
    hf, model = t5_pair
    ids, mask = _prompts(B, seed)
    ours = generate(model, ids, attention_mask=mask, max_new_tokens=10).trimmed()
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, num_beams=1)[:, 1:]
    assert [s.tolist() for s in ours] == [_cut(r, END["t5"]) for r in ref]
    assert B == 1 or len({t for s in ours for t in s.tolist()}) > 1


def _seq_logprob_lm(model, prompt, gen, seg=None, new_seg=1):
    """Full forward over prompt + generated tokens: sum of log p(gen_t | prefix)."""
    full = torch.cat([prompt, gen])[None]
    kw = {}
    if seg is not None:
        kw["segment_ids"] = torch.cat([seg, torch.full_like(gen, new_seg)])[None]
    with torch.no_grad():
        lp = model(full, **kw).logits[0].float().log_softmax(-1)
    n = len(prompt)
    return float(lp[n - 1:-1].gather(1, gen[:, None]).sum())


@pytest.mark.parametrize("kind", ["gpt2", "unilm", "t5"])
def test_cached_equals_recomputed_and_beam_scores_match_full_forward(kind, gpt2_pair, t5_pair, unilm):
    model = {"gpt2": gpt2_pair[1], "t5": t5_pair[1], "unilm": unilm}[kind]
    ids, mask = _prompts(3, 5)
    kw = dict(attention_mask=mask, max_new_tokens=8, end_id=END[kind])
    if kind == "unilm":
        kw["segment_ids"] = torch.zeros_like(ids)
    for beams in (1, 3):
        out_a, out_b = generate(model, ids, num_beams=beams, **kw), generate(model, ids, num_beams=beams,
                                                                               use_cache=False, **kw)
        (a, sa), (b, sb) = (out_a.trimmed(), out_a.scores), (out_b.trimmed(), out_b.scores)
        assert [s.tolist() for s in a] == [s.tolist() for s in b]
        torch.testing.assert_close(sa, sb, atol=1e-4, rtol=0)
        for i in range(3):
            prompt = ids[i, :int(mask[i].sum())]
            if kind == "t5":
                dec = torch.cat([torch.zeros(1, dtype=torch.long), a[i]])[None]
                with torch.no_grad():
                    lp = model(prompt[None], decoder_input_ids=dec).logits[0, :-1].log_softmax(-1)
                ref = float(lp.gather(1, a[i][:, None]).sum())
            else:
                seg = torch.zeros_like(prompt) if kind == "unilm" else None
                ref = _seq_logprob_lm(model, prompt, a[i], seg)
            assert sa[i].item() == pytest.approx(ref, abs=1e-4)


def test_sampling_seeded_and_streaming_through_the_model(gpt2_pair):
    model = gpt2_pair[1]
    ids, mask = _prompts(2, 7)
    a = generate(model, ids, attention_mask=mask, do_sample=True, num_samples=3, topk=5, seed=11, max_new_tokens=6)
    b = generate(model, ids, attention_mask=mask, do_sample=True, num_samples=3, topk=5, seed=11, max_new_tokens=6)
    assert torch.equal(a.sequences, b.sequences) and a.sequences.shape[0] == 2 * 3
    steps = []
    generate(model, ids, attention_mask=mask, max_new_tokens=4, stop_at_eos=False,
             callback=lambda step, tok, fin: steps.append(tok.clone()))
    greedy = generate(model, ids, attention_mask=mask, max_new_tokens=4, stop_at_eos=False)
    assert torch.equal(torch.stack(steps, 1), greedy.sequences)


def test_bf16_weights_under_inference_mode(gpt2_pair, t5_pair):
    for model in (gpt2_pair[1], t5_pair[1]):
        m16 = __import__("copy").deepcopy(model).to(torch.bfloat16)
        ids, mask = _prompts(2, 9)
        with torch.inference_mode():
            res = generate(m16, ids, attention_mask=mask, max_new_tokens=6, num_beams=2, stop_at_eos=False)
        out, scores = res.trimmed(), res.scores
        assert all(len(s) == 6 and int(s.max()) < V for s in out)
        assert torch.isfinite(scores).all()


def test_generate_rejects_bad_input(gpt2_pair):
    model = gpt2_pair[1]
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask"):
        generate(model, ids, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, ids, max_new_tokens=0)
    with pytest.raises(ValueError, match="num_beams"):
        generate(model, ids, num_beams=2, do_sample=True)
    encoder = kexue.build_transformer_model(config=dict(model_type="bert", vocab_size=V, hidden_size=16,
                                                        num_hidden_layers=1, num_attention_heads=2,
                                                        intermediate_size=16))
    with pytest.raises(ValueError, match="application"):
        generate(encoder, ids)


def test_model_generate_delegates(gpt2_pair, t5_pair):
    ids, mask = _prompts(2, 4)
    for model in (gpt2_pair[1], t5_pair[1]):
        a = model.generate(ids, attention_mask=mask, max_new_tokens=5)
        b = generate(model, ids, attention_mask=mask, max_new_tokens=5)
        assert torch.equal(a.sequences, b.sequences) and torch.equal(a.lengths, b.lengths)

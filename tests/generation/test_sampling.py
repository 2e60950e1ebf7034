"""random_sample and the logits filters: HF warpers as reference, frequency tests, constraints, streaming."""
import pytest
import torch
from scipy.stats import chisquare
from transformers import RepetitionPenaltyLogitsProcessor, TopKLogitsWarper, TopPLogitsWarper

from kexue.generation import AutoRegressiveDecoder, repetition_penalty, top_k_filter, top_p_filter

from .toy import markov_predict, markov_tables


def _fixed(logits):
    return lambda inputs, out, states: logits.expand(out.shape[0], -1)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_k_matches_hf(k):
    x = torch.randn(6, 17, generator=torch.Generator().manual_seed(k))
    ref = TopKLogitsWarper(top_k=k)(None, x.clone())
    assert torch.equal(top_k_filter(x, k), ref)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.8, 0.95])
def test_top_p_matches_hf(p):
    x = torch.randn(8, 23, generator=torch.Generator().manual_seed(int(p * 100))) * 2
    ref = TopPLogitsWarper(top_p=p)(None, x.clone())
    assert torch.equal(torch.isinf(top_p_filter(x, p)), torch.isinf(ref))


def test_repetition_penalty_matches_hf():
    x = torch.randn(3, 11, generator=torch.Generator().manual_seed(0))
    prev = torch.tensor([[1, 2, 2], [0, 10, 5], [3, 3, 3]])
    ref = RepetitionPenaltyLogitsProcessor(penalty=1.7)(prev, x.clone())
    torch.testing.assert_close(repetition_penalty(x, prev, 1.7), ref)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_one_step_frequencies_match_tempered_softmax(temperature):
    logits = torch.tensor([[1.0, 0.2, -0.5, 2.0, 0.0]])
    dec = AutoRegressiveDecoder(None, None, maxlen=1, predict=_fixed(logits))
    n = 20000
    draws = dec.random_sample([torch.zeros(1)], n, temperature=temperature, seed=1)[0]
    counts = torch.bincount(torch.stack(draws)[:, 0], minlength=5).double()
    expected = (logits[0].double() / temperature).softmax(-1) * n
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


def test_top_k_frequencies_match_renormalised_top_k():
    logits = torch.tensor([[1.0, 0.2, -0.5, 2.0, 0.0, 1.5]])
    dec = AutoRegressiveDecoder(None, None, maxlen=1, predict=_fixed(logits))
    n = 20000
    draws = torch.stack(dec.random_sample([torch.zeros(1)], n, topk=3, seed=2)[0])[:, 0]
    counts = torch.bincount(draws, minlength=6).double()
    kept = [3, 5, 0]
    assert counts[[1, 2, 4]].sum() == 0
    expected = logits[0, kept].double().softmax(-1) * n
    assert chisquare(counts[kept].numpy(), expected.numpy()).pvalue > 1e-3


def test_top_k_and_top_p_never_leave_the_kept_set():
    B, V, end = 3, 12, 0
    tables = markov_tables(B, V, 5)
    dec = AutoRegressiveDecoder(None, end, maxlen=6, predict=markov_predict(tables))
    for kw in (dict(topk=3), dict(topp=0.6), dict(topk=4, topp=0.5)):
        samples = dec.random_sample([torch.arange(B)], 200, seed=0, **kw)
        for b in range(B):
            for seq in samples[b]:
                prev = V
                for tok in seq.tolist():
                    row = tables[b, prev][None]
                    kept = torch.isfinite(top_p_filter(top_k_filter(row, kw.get("topk")), kw.get("topp")))[0]
                    assert kept[tok], (kw, b, seq.tolist())
                    prev = tok


def test_seed_reproducible_and_top_k_one_is_greedy():
    tables = markov_tables(2, 9, 3)
    dec = AutoRegressiveDecoder(None, 0, maxlen=8, predict=markov_predict(tables))
    x = [torch.arange(2)]
    a = dec.random_sample(x, 5, topp=0.9, seed=123)
    b = dec.random_sample(x, 5, topp=0.9, seed=123)
    assert [[s.tolist() for s in r] for r in a] == [[s.tolist() for s in r] for r in b]
    c = dec.random_sample(x, 5, topp=0.9, seed=124)
    assert [[s.tolist() for s in r] for r in a] != [[s.tolist() for s in r] for r in c]
    greedy = dec.greedy(x)
    for b_, row in enumerate(dec.random_sample(x, 3, topk=1, seed=0)):
        assert all(s.tolist() == greedy[b_].tolist() for s in row)


def test_minlen_min_ends_and_banned_ids():
    tables = markov_tables(2, 6, 7, scale=0.5)
    end = 0
    dec = AutoRegressiveDecoder(None, end, maxlen=12, minlen=4, min_ends=2, predict=markov_predict(tables))
    for row in dec.random_sample([torch.arange(2)], 50, seed=0, banned_ids=[3, 5]):
        for s in row:
            s = s.tolist()
            assert 3 not in s and 5 not in s
            assert end not in s[:3]
            assert s.count(end) == 2 and s[-1] == end or (len(s) == 12 and s.count(end) < 2)


def test_allowed_next_hook_constrains_every_step():
    """Allowed next tokens: only prefixes of the 'passage' [4, 2, 5] followed by end 0 may appear."""
    passage, end, V = [4, 2, 5], 0, 7

    def allowed(out, batch_index):
        mask = torch.zeros(out.shape[0], V, dtype=torch.bool)
        for r, prefix in enumerate(out.tolist()):
            mask[r, end] = True
            if prefix == passage[:len(prefix)] and len(prefix) < len(passage):
                mask[r, passage[len(prefix)]] = True
        return mask

    dec = AutoRegressiveDecoder(None, end, maxlen=5, predict=markov_predict(markov_tables(1, V, 0)))
    for s in dec.random_sample([torch.zeros(1, dtype=torch.long)], 100, seed=0, allowed_next=allowed)[0]:
        s = s.tolist()
        assert s[-1] == end and s[:-1] == passage[:len(s) - 1]
    g = dec.beam_search([torch.zeros(1, dtype=torch.long)], topk=3, allowed_next=allowed)[0].tolist()
    assert g[-1] == end and g[:-1] == passage[:len(g) - 1]


def test_streaming_callback_sees_every_token():
    tables = markov_tables(3, 8, 4)
    dec = AutoRegressiveDecoder(None, 0, maxlen=10, predict=markov_predict(tables))
    streamed = []
    seqs = dec.greedy([torch.arange(3)], callback=lambda step, tok, fin: streamed.append((tok.clone(), fin.clone())))
    for b in range(3):
        got, done = [], False
        for tok, fin in streamed:
            if not done:
                got.append(int(tok[b]))
            done = bool(fin[b])
        assert got == seqs[b].tolist()


def test_sample_scores_are_logprobs_of_the_filtered_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    dec = AutoRegressiveDecoder(None, None, maxlen=1, predict=_fixed(logits))
    seqs, scores = dec.random_sample([torch.zeros(1)], 50, topk=2, seed=0, return_scores=True)
    ref = logits[0, 2:].softmax(-1).log()
    for s, sc in zip(seqs[0], scores[0]):
        assert sc.item() == pytest.approx(ref[int(s[0]) - 2].item(), abs=1e-6)


def test_bad_sampling_arguments():
    dec = AutoRegressiveDecoder(None, None, maxlen=1, predict=_fixed(torch.zeros(1, 4)))
    for kw, name in ((dict(topk=0), "topk"), (dict(topp=1.5), "topp"), (dict(temperature=0.0), "temperature")):
        with pytest.raises(ValueError, match=name):
            dec.random_sample([torch.zeros(1)], 2, **kw)
    with pytest.raises(ValueError, match="banned"):
        dec.greedy([torch.zeros(1)], banned_ids=[0, 1, 2, 3])

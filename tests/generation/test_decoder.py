"""AutoRegressiveDecoder greedy and beam search against closed forms and brute force."""
import pytest
import torch

from kexue.generation import AutoRegressiveDecoder

from .toy import brute_force_best, greedy_reference, markov_predict, markov_tables, sequence_logprob


@pytest.mark.parametrize("seed", range(4))
def test_greedy_follows_argmax_chain_batched(seed):
    B, V, end = 5, 6, 0
    tables = markov_tables(B, V, seed)
    dec = AutoRegressiveDecoder(None, end, maxlen=7, predict=markov_predict(tables))
    seqs, scores = dec.greedy([torch.arange(B)], return_scores=True)
    for b in range(B):
        ref = greedy_reference(tables[b], end, 7)
        assert seqs[b].tolist() == ref
        assert scores[b].item() == pytest.approx(sequence_logprob(tables[b], ref), abs=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_beam_search_exhaustive_optimum(seed):
    """With a beam as wide as every prefix (V**(maxlen-1)), beam search returns the brute-force optimum."""
    B, V, end, maxlen = 3, 3, 1, 4
    tables = markov_tables(B, V, seed, scale=1.0)
    dec = AutoRegressiveDecoder(None, end, maxlen=maxlen, predict=markov_predict(tables))
    seqs, scores = dec.beam_search([torch.arange(B)], topk=V ** (maxlen - 1), return_scores=True)
    for b in range(B):
        ref, ref_score = brute_force_best(tables[b], end, maxlen)
        assert seqs[b].tolist() == ref
        assert scores[b].item() == pytest.approx(ref_score, abs=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_beam_as_wide_as_vocab_is_exact_for_two_steps(seed):
    B, V, end = 2, 4, 2
    tables = markov_tables(B, V, seed, scale=1.0)
    dec = AutoRegressiveDecoder(None, end, maxlen=2, predict=markov_predict(tables))
    seqs = dec.beam_search([torch.arange(B)], topk=V)
    for b in range(B):
        assert seqs[b].tolist() == brute_force_best(tables[b], end, 2)[0]


@pytest.mark.parametrize("seed", range(6))
def test_beam_one_equals_greedy_and_scores_are_sums_of_logprobs(seed):
    B, V, end = 4, 7, 3
    tables = markov_tables(B, V, seed)
    dec = AutoRegressiveDecoder(None, end, maxlen=9, predict=markov_predict(tables))
    g = dec.greedy([torch.arange(B)])
    b1 = dec.beam_search([torch.arange(B)], topk=1)
    assert [s.tolist() for s in g] == [s.tolist() for s in b1]
    seqs, scores = dec.beam_search([torch.arange(B)], topk=3, return_scores=True)
    for b in range(B):
        assert scores[b].item() == pytest.approx(sequence_logprob(tables[b], seqs[b].tolist()), abs=1e-4)


def test_beam_search_keeps_finished_hypotheses():
    """[END] (p=.4) loses step 1 to token A (p=.5) but every continuation of A ends below .4: the reference
    drops the finished [END]; the exact search returns it."""
    V, end = 3, 0
    probs = torch.full((V + 1, V), 1 / 3)
    probs[V] = torch.tensor([0.4, 0.5, 0.1])        # first step
    probs[1] = torch.tensor([0.3, 0.35, 0.35])      # after A: 0.5 * 0.35 < 0.4
    probs[2] = torch.tensor([0.3, 0.35, 0.35])
    dec = AutoRegressiveDecoder(None, end, maxlen=3, rtype="probas", predict=markov_predict(probs[None]))
    seqs, scores = dec.beam_search([torch.zeros(1, dtype=torch.long)], topk=2, return_scores=True)
    assert seqs[0].tolist() == [end]
    assert scores[0].item() == pytest.approx(torch.tensor(0.4).log().item(), abs=1e-6)


def test_length_penalty_prefers_longer_hypothesis():
    """[END] scores log .3; [A, END] scores log .245 (mean log-prob per token -0.70 > -1.20): with a length
    penalty of 1 the longer one wins, without it the shorter one."""
    V, end, A = 14, 0, 1

    def table(after_a):
        probs = torch.zeros(V + 1, V)
        probs[:, 2:] = 1.0
        probs[V] = 0.0
        probs[V, end], probs[V, A] = 0.3, 0.7
        probs[A] = torch.tensor([after_a] + [0.0] + [(1 - after_a) / (V - 2)] * (V - 2))
        return probs[None]

    x = [torch.zeros(1, dtype=torch.long)]
    dec = AutoRegressiveDecoder(None, end, maxlen=2, rtype="probas", predict=markov_predict(table(0.9)))
    assert dec.beam_search(x, topk=2)[0].tolist() == [A, end]           # .63 > .3 even raw
    dec = AutoRegressiveDecoder(None, end, maxlen=2, rtype="probas", predict=markov_predict(table(0.35)))
    assert dec.beam_search(x, topk=2)[0].tolist() == [end]              # .245 < .3
    seqs, scores = dec.beam_search(x, topk=2, length_penalty=1.0, return_scores=True)
    assert seqs[0].tolist() == [A, end]
    assert scores[0].item() == pytest.approx(float(torch.tensor(0.245).log()), abs=1e-5)


def test_stateful_predict_reorders_states_with_beams():
    """A predict that keeps a running prefix hash in `states` gives the same beams as the stateless one."""
    V, end, N0 = 5, 4, 3
    W = torch.randn(7, V, generator=torch.Generator().manual_seed(0))

    def logits_of(h):
        return W[h % 7] + 0.1 * h[:, None].float()

    def stateless(inputs, out, states):
        h = (out * torch.arange(1, out.shape[1] + 1)).sum(1) + inputs[0]
        return logits_of(h)

    def stateful(inputs, out, states):
        t = out.shape[1]
        h = inputs[0].clone() if states is None else states + out[:, -1] * t
        return logits_of(h), h

    x = [torch.arange(N0)]
    a = AutoRegressiveDecoder(None, end, maxlen=6, predict=stateless).beam_search(x, topk=3)
    b = AutoRegressiveDecoder(None, end, maxlen=6, predict=stateful).beam_search(x, topk=3)
    assert [s.tolist() for s in a] == [s.tolist() for s in b]


def test_start_id_is_fed_but_not_returned():
    seen = []

    def predict(inputs, out, states):
        seen.append(out[:, 0].tolist())
        return torch.tensor([[0.0, 5.0, 0.0]]).expand(out.shape[0], 3)

    dec = AutoRegressiveDecoder(start_id=2, end_id=1, maxlen=4, predict=predict)
    assert dec.greedy([torch.zeros(1)])[0].tolist() == [1]
    assert seen == [[2]]


def test_probas_and_logits_give_the_same_search():
    tables = markov_tables(3, 5, 1)
    a = AutoRegressiveDecoder(None, 0, 6, predict=markov_predict(tables))
    b = AutoRegressiveDecoder(None, 0, 6, rtype="probas", predict=markov_predict(tables.softmax(-1)))
    x = [torch.arange(3)]
    assert [s.tolist() for s in a.beam_search(x, 3)] == [s.tolist() for s in b.beam_search(x, 3)]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="maxlen"):
        AutoRegressiveDecoder(None, 0, maxlen=0)
    with pytest.raises(ValueError, match="rtype"):
        AutoRegressiveDecoder(None, 0, 3, rtype="prob")
    dec = AutoRegressiveDecoder(None, 0, 3, predict=lambda i, o, s: torch.full((o.shape[0], 4), float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        dec.greedy([torch.zeros(2)])
    with pytest.raises(ValueError, match="topk"):
        dec.beam_search([torch.zeros(2)], topk=0)
    with pytest.raises(TypeError, match="predict"):
        AutoRegressiveDecoder(None, 0, 3).greedy([torch.zeros(1)])
    bad_shape = AutoRegressiveDecoder(None, 0, 3, predict=lambda i, o, s: torch.zeros(o.shape[0] + 1, 4))
    with pytest.raises(ValueError, match="scores"):
        bad_shape.greedy([torch.zeros(2)])
    with pytest.raises(ValueError, match="batch"):
        bad_shape.greedy([torch.zeros(2), torch.zeros(3)])

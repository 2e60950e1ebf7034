"""Bidirectional search and MLM slot filling: bad arguments and bad model outputs give clear errors (issue 8)."""
import math

import pytest
import torch

from kexue.generation import (MLMSlotReader, NgramIndex, SyncBidirectionalBeamSearch, passage_constrained_decode,
                              vote_answers)

PAD, BOS, EOS = 0, 1, 2


class _Enc:
    def index_select(self, index):
        return self


class _Mock:
    """step() returns probs(N, t) [N, V] for both directions (t: tokens so far, start included)."""

    def __init__(self, probs):
        self.probs = probs

    def encode(self, src):
        return _Enc()

    def step(self, enc, l2r, r2l):
        p = self.probs(l2r.shape[0], l2r.shape[1])
        return p, p


def _uniform(V=6):
    return _Mock(lambda n, t: torch.full((n, V), 1.0 / V))


@pytest.mark.parametrize("kw,name,err", [
    (dict(length_penalty=float("nan")), "length_penalty", ValueError),
    (dict(length_penalty=1e4), "length_penalty", ValueError),
    (dict(beam_size=2.0), "beam_size", TypeError),
    (dict(max_len=0), "max_len", ValueError),
    (dict(partner_reduce="min"), "partner_reduce", ValueError),
    (dict(pad_id=-1), "pad_id", ValueError),
    (dict(banned_l2r=[0.5]), "banned_l2r", TypeError),
])
def test_bidirectional_constructor_names_the_argument(kw, name, err):
    with pytest.raises(err, match=name):
        SyncBidirectionalBeamSearch(_uniform(), BOS, EOS, **kw)


def test_bidirectional_ids_outside_the_model_vocabulary():
    with pytest.raises(ValueError, match="eos_id"):
        SyncBidirectionalBeamSearch(_uniform(V=6), BOS, 10**6, max_len=3)([3])
    with pytest.raises(ValueError, match="banned_r2l"):
        SyncBidirectionalBeamSearch(_uniform(V=6), BOS, EOS, banned_r2l=[6], max_len=3)([3])
    with pytest.raises(TypeError, match="src_ids"):
        SyncBidirectionalBeamSearch(_uniform(V=6), BOS, EOS, max_len=3)([3.5])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5])
def test_bidirectional_refuses_bad_probabilities(bad):
    def probs(n, t):
        p = torch.full((n, 6), 1.0 / 6)
        p[:, 3] = bad
        return p
    with pytest.raises(ValueError, match="probabilities"):
        SyncBidirectionalBeamSearch(_Mock(probs), BOS, EOS, max_len=3)([3])


def test_bidirectional_strong_length_penalty_stays_finite():
    """L2R can end only at step 4, where its score / 4**-70 overflowed float32 to -inf: the finished
    hypothesis was never recorded and a live row came back instead. R2L never ends."""
    V = 6

    def probs(n, t):
        p = torch.zeros(n, V)
        if t < 4:
            p[:, 3], p[:, 4] = 0.6, 0.4
        else:
            p[:, EOS] = 1.0                                        # R2L bans EOS: its rows die here
        return p
    search = SyncBidirectionalBeamSearch(_Mock(probs), BOS, EOS, beam_size=2, max_len=5, length_penalty=-70.0,
                                         banned_r2l=[PAD, EOS, BOS])
    tokens, side, score = search([3], return_details=True)
    assert (tokens, side) == ([3, 3, 3], "l2r")
    assert score == pytest.approx(3 * math.log(0.6) * 4 ** 70, rel=1e-5)


def test_bidirectional_sizes_are_checked_against_memory():
    search = SyncBidirectionalBeamSearch(_uniform(), BOS, EOS, beam_size=10**5, max_len=10**6)
    with pytest.raises(ValueError, match=r"beam_size=100000 with max_len=1000000 .*GiB"):
        search([3])                                                             # was an allocator error


def test_slot_decode_bad_inputs():
    index = NgramIndex([5, 6, 7])
    with pytest.raises(ValueError, match="slot_probs"):
        passage_constrained_decode(torch.zeros(0, 10), index, 2)                    # was ZeroDivisionError
    with pytest.raises(ValueError, match="slot_probs"):
        passage_constrained_decode(torch.full((3, 10), float("nan")), index, 2)
    with pytest.raises(ValueError, match="end_id"):
        passage_constrained_decode(torch.rand(3, 10), index, 10)                     # was IndexError
    with pytest.raises(ValueError, match="passage_ids"):
        passage_constrained_decode(torch.rand(3, 6), index, 2)                       # passage id 7 >= V = 6
    with pytest.raises(TypeError, match="passage_ids"):
        NgramIndex([5, 6.5])
    with pytest.raises(TypeError, match="min_len"):
        passage_constrained_decode(torch.rand(3, 10), index, 2, min_len=1.5)


def test_vote_answers_refuses_scores_that_break_the_formula():
    with pytest.raises(ValueError, match="vote scores"):
        vote_answers([((5,), -1.0)])                                                 # was ZeroDivisionError
    with pytest.raises(ValueError, match="vote scores"):
        vote_answers([((5,), float("nan"))])
    assert vote_answers([((5,), -1.0)], rule="sum") == {(5,): -1.0}


def test_slot_reader_arguments():
    with pytest.raises(TypeError, match="num_slots"):
        MLMSlotReader(lambda *a, **k: None, 3, 2, 1, num_slots=2.0)
    with pytest.raises(ValueError, match="mask_id"):
        MLMSlotReader(lambda *a, **k: None, -3, 2, 1)
    reader = MLMSlotReader(lambda *a, **k: None, 3, 2, 1, num_slots=2)
    with pytest.raises(ValueError, match="max_p"):
        reader.build_inputs([7], [8], max_p=-1)

"""kexue.datasets.recall: the associative-recall sequences decode back to their answers (an independent
brute-force read of every token), the offsets obey each variant's rule, seeds repeat; sort-unique targets."""
import pytest
import torch

from kexue.datasets import associative_recall, recall_vocab_size, sort_unique


def _decode(tokens, K, V, F):
    """Brute force: find the item whose key equals the query's, return (its value, its distance back)."""
    n = len(tokens)
    query = tokens[-1] - F - K * V
    assert 0 <= query < K
    hits = [(p, (t - F) % V) for p, t in enumerate(tokens[:-1]) if F <= t < F + K * V and (t - F) // V == query]
    assert len(hits) == 1, "exactly one item carries the query key"
    p, value = hits[0]
    return value, n - 1 - p


@pytest.mark.parametrize("variant", ["distant", "near"])
def test_every_sequence_answers_its_target_at_its_offset(variant):
    K, V, F, n, r = 6, 5, 3, 48, 4
    task = associative_recall(200, variant, seq_len=n, num_keys=K, num_values=V, num_items=5, num_fillers=F,
                              rate=r, min_distance=20, seed=3)
    assert task.tokens.shape == (200, n) and task.vocab_size == recall_vocab_size(K, V, F) == F + K * V + K
    assert int(task.tokens.max()) < task.vocab_size and int(task.tokens.min()) >= 0
    for row, target, offset in zip(task.tokens.tolist(), task.targets.tolist(), task.offsets.tolist()):
        value, dist = _decode(row, K, V, F)
        assert (value, dist) == (target, offset)
        assert sum(F <= t < F + K * V for t in row) == 5                       # num_items items, fillers elsewhere
        if variant == "distant":
            assert dist >= 20 and dist % r == 0
        else:
            assert 1 <= dist <= 3 and dist % r != 0
    assert set(task.targets.tolist()) == set(range(V))                       # values cover the classes


def test_seeded_and_generator_accepted():
    a, b = associative_recall(20, seq_len=64, min_distance=16, seed=7), associative_recall(20, seq_len=64,
                                                                                          min_distance=16, seed=7)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.targets, b.targets)
    c = associative_recall(20, seq_len=64, min_distance=16, seed=torch.Generator().manual_seed(7))
    assert torch.equal(a.tokens, c.tokens)
    assert not torch.equal(a.tokens, associative_recall(20, seq_len=64, min_distance=16, seed=8).tokens)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="variant"):
        associative_recall(2, "far")
    with pytest.raises(ValueError, match="min_distance"):
        associative_recall(2, "distant", seq_len=32, min_distance=40)
    with pytest.raises(ValueError, match="rate=1"):
        associative_recall(2, "near", rate=1)                                # every offset is a multiple of 1
    with pytest.raises(ValueError, match="num_items"):
        associative_recall(2, num_keys=4, num_items=5)
    with pytest.raises(TypeError, match="seed"):
        associative_recall(2, seed=1.5)
    with pytest.raises(ValueError, match="max_len"):
        sort_unique(2, min_len=5, max_len=4)


def test_sort_unique_targets_are_the_sorted_distinct_symbols():
    pairs = sort_unique(300, alphabet=30, min_len=8, max_len=16, offset=3, seed=1)
    assert len(pairs) == 300 and pairs == sort_unique(300, alphabet=30, min_len=8, max_len=16, offset=3, seed=1)
    for src, tgt in pairs:
        assert 8 <= len(src) <= 16 and all(3 <= s < 33 for s in src)
        assert all(a < b for a, b in zip(tgt, tgt[1:])) and set(tgt) == set(src)
    assert {len(s) for s, _ in pairs} == set(range(8, 17))

"""kexue.datasets.make_paraphrase_groups (https://kexue.fm/archives/5743): seeded, within the spec's ranges, and
every rendering is its meaning's words by synonyms, up to local swaps and fillers."""
import pytest

from kexue.datasets import make_paraphrase_groups


@pytest.fixture(scope="module")
def data():
    return make_paraphrase_groups(200, 300, seed=3)


def test_same_seed_same_data_other_seed_other_data(data):
    again = make_paraphrase_groups(200, 300, seed=3)
    assert again.sentences == data.sentences and again.groups == data.groups
    assert make_paraphrase_groups(200, 300, seed=4).sentences != data.sentences


def test_sizes_follow_the_recipe(data):
    assert data.num_groups == 200 and len(data.sentences) == len(data.groups)
    counts = [data.groups.count(g) for g in range(200)]
    assert min(counts) >= 5 and max(counts) <= 10
    assert all(4 <= len(m) <= 8 for m in data.meanings) and {w for m in data.meanings for w in m} <= set(range(300))
    per_word = [data.word_of_token.count(w) for w in range(300)]
    assert min(per_word) >= 2 and max(per_word) <= 3
    assert all(0 < t < data.vocab_size for s in data.sentences for t in s)         # no padding id inside


def test_every_rendering_is_its_meaning_up_to_local_swaps_and_fillers(data):
    for toks, g in zip(data.sentences, data.groups):
        content = [data.word_of_token[t] for t in toks if data.word_of_token[t] >= 0]
        fillers = [t for t in toks if data.word_of_token[t] < 0]
        meaning = data.meanings[g]
        assert len(fillers) <= 2 and all(t >= 2 for t in fillers)
        assert sorted(content) == sorted(meaning)
        # local swaps only: each word stays within one position of its place in the meaning
        i = 0
        while i < len(meaning):
            if content[i] == meaning[i]:
                i += 1
            else:
                assert content[i] == meaning[i + 1] and content[i + 1] == meaning[i]
                i += 2


def test_renderings_vary_by_synonyms(data):
    distinct = sum(len({tuple(s) for s, g in zip(data.sentences, data.groups) if g == k}) > 1 for k in range(200))
    assert distinct > 190


def test_split_keeps_groups_apart_and_relabels(data):
    train, test = data.split(150)
    assert train.num_groups == 150 and test.num_groups == 50
    assert set(train.groups) == set(range(150)) and set(test.groups) == set(range(50))
    assert len(train.sentences) + len(test.sentences) == len(data.sentences)
    assert test.meanings[0] == data.meanings[150]
    assert test.sentences[0] == data.sentences[data.groups.index(150)]


@pytest.mark.parametrize("kw,name", [(dict(num_meanings=0), "num_meanings"), (dict(filler_prob=1.5), "filler_prob"),
                                     (dict(words=(5, 3)), "words"), (dict(seed=1.0), "seed")])
def test_bad_arguments_are_refused_by_name(kw, name):
    with pytest.raises((ValueError, TypeError), match=name.split("[")[0]):
        make_paraphrase_groups(**kw)

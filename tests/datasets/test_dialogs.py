"""kexue.datasets.scripted_dialogs (https://kexue.fm/archives/7718): seeded two-party chats whose last turn
recalls a fact its speaker stated 4 or 6 turns earlier, after the other speaker's question."""
import pytest

from kexue.datasets import DIALOG_FACTS, scripted_dialogs


def test_seeded():
    a = scripted_dialogs(50, seed=1)
    assert [d.turns for d in a] == [d.turns for d in scripted_dialogs(50, seed=1)]
    assert [d.turns for d in a] != [d.turns for d in scripted_dialogs(50, seed=2)]


def test_every_chat_recalls_its_fact_from_the_same_speaker():
    dialogs = scripted_dialogs(300, seed=0)
    kinds = set()
    for d in dialogs:
        prefix, question, values = DIALOG_FACTS[d.kind]
        kinds.add(d.kind)
        assert 5 <= len(d.turns) <= 8 and d.fact in values
        assert d.turns[d.fact_turn] == prefix + d.fact == d.answer
        assert d.turns[-2] == question
        distance = len(d.turns) - 1 - d.fact_turn
        assert distance in (4, 6) and distance % 2 == 0                  # same speaker states and recalls
        assert all(t and " " not in t for t in d.turns)
        assert d.fact not in "".join(d.turns[d.fact_turn + 1:-1])       # only the fact turn holds it
    assert kinds == set(DIALOG_FACTS)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="n must"):
        scripted_dialogs(-1)
    with pytest.raises(TypeError, match="seed"):
        scripted_dialogs(3, seed=0.5)

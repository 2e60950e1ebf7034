"""kexue.train.mlm: BERT's 80/10/10 masking (binomial bounds, specials, labels) and the MLM pretraining loop."""
import math

import pytest
import torch
import torch.nn.functional as F

from kexue.models import build_transformer_model
from kexue.train import mlm_eval_loss, mlm_mask, pretrain_mlm

V, SPECIALS, MASK = 40, [0, 1, 2, 3], 3


def _within(count, n, p, sigmas=5.0):
    """count ~ Binomial(n, p): within `sigmas` standard deviations of n p."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_masking_rates_are_within_binomial_bounds_on_a_large_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (256, 256), generator=g)
    masked, labels = mlm_mask(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIALS, rate=0.15, generator=g)
    eligible = ~torch.isin(ids, torch.tensor(SPECIALS))
    chosen = labels != -100
    n_eligible, n_chosen = int(eligible.sum()), int(chosen.sum())
    assert _within(n_chosen, n_eligible, 0.15)
    to_mask = int((chosen & (masked == MASK)).sum())
    kept = int((chosen & (masked == ids)).sum())
    replaced = n_chosen - to_mask - kept
    v_prime = V - len(SPECIALS)  # a random replacement equals the original with probability 1 / V'
    assert _within(to_mask, n_chosen, 0.8)
    assert _within(kept, n_chosen, 0.1 + 0.1 / v_prime)
    assert _within(replaced, n_chosen, 0.1 * (1 - 1 / v_prime))


def test_specials_are_never_chosen_and_labels_hold_the_original_ids():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (64, 128), generator=g)
    masked, labels = mlm_mask(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIALS, rate=0.5, generator=g)
    special = torch.isin(ids, torch.tensor(SPECIALS))
    chosen = labels != -100
    assert not bool((chosen & special).any())
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing changes outside the chosen positions
    changed = chosen & (masked != ids) & (masked != MASK)
    assert not bool(torch.isin(masked[changed], torch.tensor(SPECIALS)).any())  # replacements are no specials
    assert int(changed.sum()) > 0


def test_rate_one_chooses_every_non_special_position_and_the_generator_makes_it_repeatable():
    ids = torch.tensor([[2, 7, 8, 9, 1, 0, 0]])
    _, labels = mlm_mask(ids, mask_id=MASK, vocab_size=V, special_ids=[0, 1, 2, 3], rate=1.0)
    assert labels.tolist() == [[-100, 7, 8, 9, -100, -100, -100]]
    big = torch.randint(4, V, (8, 50))
    a = mlm_mask(big, mask_id=MASK, vocab_size=V, special_ids=SPECIALS, generator=torch.Generator().manual_seed(5))
    b = mlm_mask(big, mask_id=MASK, vocab_size=V, special_ids=SPECIALS, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"rate": 0.0}, ValueError, "rate"), ({"rate": 1.5}, ValueError, "rate"),
    ({"mask_id": V}, ValueError, "mask_id"), ({"special_ids": [0, 99]}, ValueError, "special_ids"),
    ({"special_ids": list(range(V))}, ValueError, "special_ids"),
    ({"input_ids": torch.zeros(2, 3)}, TypeError, "input_ids"),
    ({"input_ids": torch.full((2, 3), V)}, ValueError, "input_ids"), ({"generator": 3}, TypeError, "generator")])
def test_mlm_mask_refuses_bad_arguments_by_name(kwargs, exc, word):
    args = dict(input_ids=torch.ones(2, 3, dtype=torch.long), mask_id=MASK, vocab_size=V, special_ids=SPECIALS)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        mlm_mask(**args)


def _tiny_bert(seed=0):
    torch.manual_seed(seed)
    return build_transformer_model(config=dict(model_type="bert", vocab_size=V, hidden_size=32, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=64, max_position_embeddings=16,
                                               pad_token_id=0), with_mlm=True)


def _corpus(n=64):
    """Texts where token k+1 follows k: a pattern an MLM learns in a few dozen steps. [CLS]=2, [SEP]=1."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(n):
        start, length = int(torch.randint(4, 20, (1,), generator=g)), int(torch.randint(4, 12, (1,), generator=g))
        rows.append([2] + list(range(start, start + length)) + [1])
    return rows


def test_eval_loss_equals_cross_entropy_of_the_full_logits():
    """The loop runs the MLM head on the chosen positions only: the loss must equal the brute-force one."""
    model, rows = _tiny_bert().eval(), _corpus(16)
    loss = mlm_eval_loss(model, rows, mask_id=MASK, special_ids=SPECIALS, rate=0.3, batch_size=16, seed=3)
    ids = torch.zeros(16, max(map(len, rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    masked, labels = mlm_mask(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIALS, rate=0.3,
                              generator=torch.Generator().manual_seed(3))
    logits = model(masked, attention_mask=ids != 0).logits
    assert loss == pytest.approx(F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)).item(), rel=1e-5)


def test_pretraining_lowers_the_loss_is_seeded_and_leaves_the_callers_rng_alone():
    rows = _corpus()
    before = mlm_eval_loss(_tiny_bert(), rows, mask_id=MASK, special_ids=SPECIALS, seed=9)
    state = torch.random.get_rng_state()
    models = [_tiny_bert(), _tiny_bert()]
    torch.random.set_rng_state(state)
    hists = [pretrain_mlm(m, rows, mask_id=MASK, special_ids=SPECIALS, steps=60, batch_size=16, lr=3e-3, seed=4)
             for m in models]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert hists[0] == hists[1] and len(hists[0]["loss"]) == 60 and hists[0]["step"][-1] == 60
    assert all(torch.equal(a, b) for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()))
    assert max(hists[0]["lr"]) == pytest.approx(3e-3) and hists[0]["lr"][0] < 3e-3  # warm-up
    after = mlm_eval_loss(models[0], rows, mask_id=MASK, special_ids=SPECIALS, seed=9)
    assert after < before - 0.5, (before, after)


def test_a_single_step_and_a_no_warmup_run_work():
    for kwargs in ({"steps": 1}, {"steps": 5, "warmup": 0.0}):
        hist = pretrain_mlm(_tiny_bert(), _corpus(8), mask_id=MASK, special_ids=SPECIALS, batch_size=4, lr=1e-3,
                            **kwargs)
        assert len(hist["loss"]) == kwargs["steps"]
    assert hist["lr"][0] == pytest.approx(1e-3)  # no warm-up: the full lr at once, then linear decay
    assert hist["lr"] == sorted(hist["lr"], reverse=True)


def test_a_time_box_runs_and_stops():
    hist = pretrain_mlm(_tiny_bert(), _corpus(8), mask_id=MASK, special_ids=SPECIALS, seconds=0.2, batch_size=4)
    assert len(hist["loss"]) >= 1 and all(math.isfinite(x) for x in hist["loss"])


@pytest.mark.parametrize("kwargs, exc, word", [
    ({}, ValueError, "steps"), ({"steps": 3, "seconds": 1.0}, ValueError, "exactly one"),
    ({"steps": 0}, ValueError, "steps"), ({"steps": 2, "lr": -1.0}, ValueError, "lr"),
    ({"steps": 2, "token_id_lists": [[2, 5, 1], []]}, ValueError, "non-empty"),
    ({"steps": 2, "token_id_lists": [[2] + [5] * 20 + [1]]}, ValueError, "max_position"),
    ({"steps": 2, "token_id_lists": [[2, 50, 1]]}, ValueError, "vocab_size"),
    ({"steps": 2, "batch_size": 0}, ValueError, "batch_size")])
def test_pretrain_mlm_refuses_bad_arguments_by_name(kwargs, exc, word):
    args = dict(model=_tiny_bert(), token_id_lists=[[2, 5, 6, 1]], mask_id=MASK, special_ids=SPECIALS)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        pretrain_mlm(**args)


def test_a_model_without_mlm_head_is_refused():
    encoder = build_transformer_model(config=dict(model_type="bert", vocab_size=V, hidden_size=32, num_hidden_layers=1,
                                                  num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ValueError, match="with_mlm=True"):
        pretrain_mlm(encoder, [[2, 5, 1]], mask_id=MASK, special_ids=SPECIALS, steps=1)
    with pytest.raises(ValueError, match="with_mlm=True"):
        mlm_eval_loss(encoder, [[2, 5, 1]], mask_id=MASK, special_ids=SPECIALS)

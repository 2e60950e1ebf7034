"""From data to the Trainer without glue: nested and dict batches, a loss that sees the batch, numpy batches
(bert4keras-style token classification: ids, segments, a padding mask the loss needs)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kexue.data import DataGenerator, collate_padded
from kexue.train import Trainer


class _Tagger(nn.Module):
    """model(ids, segs) -> logits [B, n, C]; refuses anything but an integer tensor, like the encoders."""

    def __init__(self, vocab=20, tags=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.tok, self.seg = nn.Embedding(vocab, 8), nn.Embedding(2, 8)
        self.out = nn.Linear(8, tags)

    def forward(self, ids, segs):
        for name, x in (("ids", ids), ("segs", segs)):
            if not isinstance(x, torch.Tensor) or x.is_floating_point():
                raise TypeError(f"{name} must be an integer tensor [B, n], got {type(x).__name__}")
        return self.out(torch.tanh(self.tok(ids) + self.seg(segs)))


def _samples(n=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        L = int(rng.integers(2, 7))
        ids = rng.integers(1, 20, L).tolist()
        segs = [0] * (L // 2) + [1] * (L - L // 2)
        out.append(((ids, segs), rng.integers(0, 3, L).tolist()))
    return out


def _masked_ce(logits, tags, ids):
    """Mean cross-entropy over real tokens (ids != 0): the closed form the Trainer's loss must equal."""
    mask = ids != 0
    return F.cross_entropy(logits[mask], tags[mask])


def test_three_tuple_batch_is_split_inputs_all_but_last():
    samples = _samples()
    flat = [(i, s, y) for (i, s), y in samples]                  # (ids, segs, tags): a plain 3-tuple
    batch = collate_padded(flat)
    m = _Tagger()
    seen = {}

    def loss_fn(logits, tags):
        seen["tags"] = tags
        return F.cross_entropy(logits.flatten(0, 1), tags.flatten())
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), loss_fn)
    logs = tr.evaluate([batch])
    assert torch.equal(seen["tags"], batch[2])
    ref = F.cross_entropy(m(batch[0], batch[1]).flatten(0, 1), batch[2].flatten())
    assert logs["loss"] == pytest.approx(ref.item(), rel=1e-6)


def test_loss_that_declares_batch_sees_the_mask_bert4keras_example():
    samples = _samples()
    gen = DataGenerator(samples, batch_size=12, shuffle=False)            # ((ids, segs), tags) padded per field
    (ids, segs), tags = next(iter(gen))

    def loss_fn(logits, tags, batch):                 # the mask comes from the batch, not smuggled via targets
        (ids, _), _ = batch
        return _masked_ce(logits, tags, ids)

    def acc(logits, tags, batch):
        mask = batch[0][0] != 0
        return (logits.argmax(-1) == tags)[mask].double().mean()
    m = _Tagger()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), loss_fn, metrics={"acc": acc})
    logs = tr.evaluate(gen)
    with torch.no_grad():
        logits = m(ids, segs)
    assert logs["loss"] == pytest.approx(_masked_ce(logits, tags, ids).item(), rel=1e-6)
    mask = ids != 0
    assert logs["acc"] == pytest.approx((logits.argmax(-1) == tags)[mask].double().mean().item(), rel=1e-9)
    padded_mean = F.cross_entropy(logits.flatten(0, 1), tags.flatten()).item()
    assert logs["loss"] != pytest.approx(padded_mean, rel=1e-6)          # the mask made a difference
    hist = tr.fit(gen, epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 3

    def batch_only(logits, batch):                    # (outputs, batch): the targets are read from the batch
        (ids, _), tags = batch
        return _masked_ce(logits, tags, ids)
    tr2 = Trainer(m, None, batch_only)
    assert tr2.evaluate(gen)["loss"] == pytest.approx(tr.evaluate(gen)["loss"], rel=1e-9)


def test_dict_batch_with_target_keys():
    samples = [{"ids": i, "segs": s, "labels": y} for (i, s), y in _samples()]
    batch = collate_padded(samples, pad_values={"labels": -100})
    m = _Tagger()

    def loss_fn(logits, labels):
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), loss_fn, target_keys="labels")
    with torch.no_grad():
        ref = loss_fn(m(batch["ids"], batch["segs"]), batch["labels"])
    assert tr.evaluate([batch])["loss"] == pytest.approx(ref.item(), rel=1e-6)
    tr = Trainer(m, None, loss_fn, target_keys=("labels",))       # one key: the targets are its value
    assert tr.evaluate([batch])["loss"] == pytest.approx(ref.item(), rel=1e-6)
    tr = Trainer(m, None, lambda o, t: loss_fn(o, t["labels"]) + 0 * t["segs"].sum(), target_keys=("labels", "segs"))
    with pytest.raises(TypeError, match="segs"):                  # segs left the inputs: the model misses it
        tr.evaluate([batch])
    tr = Trainer(m, None, loss_fn, target_keys="label")
    with pytest.raises(KeyError, match=r"target_keys.*'label'.*\['ids', 'segs', 'labels'\]"):
        tr.evaluate([batch])
    with pytest.raises(ValueError, match="target_keys needs a loss_fn"):
        Trainer(m, None, target_keys="labels")
    with pytest.raises(TypeError, match="target_keys must be"):
        Trainer(m, None, loss_fn, target_keys=3)


def test_numpy_batches_are_converted_to_tensors():
    samples = _samples()
    torch_batches = [collate_padded(samples[:6]), collate_padded(samples[6:])]
    numpy_batches = [((i.numpy(), s.numpy()), y.numpy()) for (i, s), y in torch_batches]

    def loss_fn(logits, tags, batch):
        return _masked_ce(logits, tags, batch[0][0])
    finals = []
    for batches in (torch_batches, numpy_batches):
        m = _Tagger()
        Trainer(m, torch.optim.SGD(m.parameters(), lr=0.5), loss_fn).fit(batches, epochs=2, verbose=0)
        finals.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(finals[0], finals[1])
    m = _Tagger()
    out = Trainer(m, None, loss_fn).predict(numpy_batches)
    assert out.shape == (12, 6, 3)


def test_a_batch_the_model_cannot_take_explains_the_split_rule():
    samples = _samples()
    batch = collate_padded([(i, s, y, y) for (i, s), y in samples])      # 4 items: inputs = the first 3
    m = _Tagger()
    tr = Trainer(m, None, lambda o, t: o.sum())
    with pytest.raises(TypeError, match=r"(?s)_Tagger.forward.*3 positional inputs.*all but the last item.*"
                                        r"\(\(a, b\), y\)"):
        tr.evaluate([batch])
    def broken_forward(ids, segs):                        # a TypeError raised inside forward passes untouched
        raise TypeError("inside the model")
    m.forward = broken_forward
    with pytest.raises(TypeError, match="^inside the model$"):
        tr.evaluate([collate_padded([(i, s, y) for (i, s), y in samples])])


def test_crf_tagger_port_needs_no_glue():
    """A bert4keras NER port: ((ids, segs), tags) samples padded by collate_padded (tags padded with -100),
    CRF.sparse_loss / sparse_accuracy as loss and metric with the mask read from the batch."""
    from kexue.nn.crf import CRF

    class Tagger(_Tagger):
        def __init__(self):
            super().__init__()
            self.crf = CRF(3)

    samples = [((ids, segs), [t % 3 for t in ids]) for (ids, segs), _ in _samples(n=48, seed=1)]
    gen = DataGenerator(samples, batch_size=8, collate=lambda b: collate_padded(b, pad_values={1: -100}), seed=0)
    m = Tagger()
    tr = Trainer(m, torch.optim.Adam(m.parameters(), lr=0.05),
                 lambda emissions, tags, batch: m.crf.sparse_loss(emissions, tags, batch[0][0] != 0),
                 metrics={"acc": lambda emissions, tags, batch: m.crf.sparse_accuracy(
                     emissions, tags, batch[0][0] != 0, viterbi=True)})
    before = tr.evaluate(gen)
    hist = tr.fit(gen, epochs=15, verbose=0)
    after = tr.evaluate(gen)
    # tag = id % 3 is a function of the token: the CRF path must learn it (5 seeds: 1.0 after 15 epochs)
    assert before["acc"] < 0.6 and after["acc"] > 0.95 and hist.history["loss"][-1] < before["loss"]


def test_a_metric_that_is_not_a_scalar_is_named():
    samples = _samples()
    batch = collate_padded([(i, s, y) for (i, s), y in samples])
    m = _Tagger()
    tr = Trainer(m, None, lambda o, t: o.sum(), metrics={"per_token": lambda o, t: (o.argmax(-1) == t).float()})
    with pytest.raises(TypeError, match=r"metrics\['per_token'\] must return a scalar.*shape \(12, 6\)"):
        tr.evaluate([batch])

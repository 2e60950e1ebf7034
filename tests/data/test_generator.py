"""DataGenerator under the Trainer: shuffling is never silently lost, dropped samples end the epoch cleanly,
and a resume replays the same order (issue 8)."""
import random

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from kexue.data import DataGenerator
from kexue.train import LambdaCallback, Trainer
from tests.train import tiny

N = 24


def _samples():
    ds = tiny.data(n=N)
    return [(i, ds.tensors[0][i], ds.tensors[1][i]) for i in range(N)]


def _collate(items):
    return torch.stack([x for _, x, _ in items]), torch.stack([y for _, _, y in items])


class Recording(DataGenerator):
    """Remembers the sample ids it hands out; `encode` may add python-random noise (an augmentation)."""

    def __init__(self, *a, noise=False, drop=(), **kw):
        self.seen, self.noise, self.drop = [], noise, set(drop)
        super().__init__(*a, encode=self._encode, collate=_collate, **kw)

    def _encode(self, item):
        i, x, y = item
        if i in self.drop:
            return None
        self.seen.append(i)
        return (i, x + (0.01 * random.random() if self.noise else 0.0), y)


class Bert4kerasStyle(DataGenerator):
    """A port of a bert4keras generator: `__iter__(self, random=False)` calling `self.sample(random)`."""

    def __init__(self, *a, **kw):
        self.seen = []
        super().__init__(*a, **kw)

    def __iter__(self, random=False):
        batch = []
        for is_end, item in self.sample(random):
            self.seen.append(item[0])
            batch.append(item)
            if len(batch) == self.batch_size or is_end:
                yield _collate(batch)
                batch = []


def _fit(gen, epochs=2, callbacks=(), **kw):
    m = tiny.model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy, seed=kw.pop("seed", 0))
    tr.fit(gen, epochs=epochs, callbacks=list(callbacks), verbose=0, **kw)
    return tr


@pytest.mark.parametrize("cls", [Recording, Bert4kerasStyle])
def test_fit_shuffles_a_data_generator_by_trainer_seed_and_epoch(cls):
    a, b = cls(_samples(), 8), cls(_samples(), 8)
    _fit(a, seed=3)
    _fit(b, seed=3)
    first, second = a.seen[:N], a.seen[N:]
    assert sorted(first) == sorted(second) == list(range(N))
    assert first != list(range(N)) and first != second              # shuffled, a new order each epoch
    assert a.seen == b.seen                                           # a function of (seed, epoch)
    c = cls(_samples(), 8)
    _fit(c, seed=4)
    assert c.seen != a.seen
    d = cls(_samples(), 8)
    _fit(d, shuffle=False)
    assert d.seen == list(range(N)) * 2


def test_forfit_of_a_bert4keras_style_subclass_shuffles_like_bert4keras():
    g = Bert4kerasStyle(_samples(), 8, seed=1)
    it = g.forfit()
    for _ in range(6):
        next(it)
    assert sorted(g.seen[:N]) == list(range(N)) and g.seen[:N] != list(range(N)) and g.seen[:N] != g.seen[N:]


def test_plain_iteration_order_is_a_function_of_seed_and_epoch():
    a, b = Recording(_samples(), 5, shuffle=True, seed=7), Recording(_samples(), 5, shuffle=True, seed=7)
    for g in (a, b):
        for _ in range(2):
            list(g)
    assert a.seen == b.seen and a.seen[:N] != a.seen[N:]
    c = Recording(_samples(), 5, shuffle=True, seed=7)
    c.set_epoch(1)
    list(c)
    assert c.seen == a.seen[N:]
    plain = Recording(_samples(), 5)
    assert plain.seen == [] and len(list(plain)) == 5 and plain.seen == list(range(N))   # lazy; plain: in order


def test_shuffle_that_cannot_be_honoured_is_refused():
    ds = tiny.data(n=N)
    with pytest.raises(ValueError, match="shuffle=True.*list"):
        _fit([ds[i:i + 8] for i in range(0, N, 8)], shuffle=True)
    with pytest.raises(ValueError, match="shuffle=True.*SequentialSampler"):
        _fit(DataLoader(ds, batch_size=8), shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False.*RandomSampler"):
        _fit(DataLoader(ds, batch_size=8, shuffle=True), shuffle=False)
    with pytest.raises(TypeError, match="shuffle"):
        _fit(ds, shuffle="yes", batch_size=8)
    assert _fit([ds[i:i + 8] for i in range(0, N, 8)]).global_step == 6           # default: as they come
    assert _fit(DataLoader(ds, batch_size=8, shuffle=True), shuffle=True).global_step == 6


@pytest.mark.parametrize("accum", [1, 2])
def test_dropped_samples_end_the_epoch_cleanly(accum):
    g = Recording(_samples(), 4, drop=range(8))                 # len() says 6 batches, only 4 come
    m = tiny.model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy, accum_steps=accum)
    hist = tr.fit(g, epochs=2, verbose=0)
    assert tr.epoch == 2 and tr.global_step == 2 * 4 // accum and len(hist.history["loss"]) == 2
    assert len(g) == 6 and sorted(g.seen[:16]) == list(range(8, N))


@pytest.mark.parametrize("stop", [2, 4, 5])
def test_resume_with_a_shuffling_augmenting_generator_is_exact(tmp_path, stop):
    def run(callbacks=(), resume=None):
        random.seed(0)
        g = Recording(_samples(), 4, noise=True, drop=[3, 17])
        m = tiny.model()
        tr = Trainer(m, torch.optim.Adam(m.parameters(), lr=0.05), F.cross_entropy)
        tr.fit(g, epochs=2, callbacks=list(callbacks), resume_from=resume, verbose=0)
        return tr
    ref = run()
    part = None

    def cut(b, logs):
        if part.global_step == stop:
            part.save_checkpoint(tmp_path / "ck.pt")
            part.stop_training = True
    random.seed(0)
    g = Recording(_samples(), 4, noise=True, drop=[3, 17])
    m = tiny.model()
    part = Trainer(m, torch.optim.Adam(m.parameters(), lr=0.05), F.cross_entropy)
    part.fit(g, epochs=2, callbacks=[LambdaCallback(on_train_batch_end=cut)], verbose=0)
    assert part.global_step == stop
    res = run(resume=tmp_path / "ck.pt")
    tiny.equal_trees(res.module.state_dict(), ref.module.state_dict())


def test_a_dataloader_with_its_own_batch_sampler_is_the_users_choice():
    from torch.utils.data import Sampler

    class Reversed(Sampler):
        def __iter__(self):
            return iter([list(range(i, min(i + 8, N))) for i in range(0, N, 8)][::-1])

        def __len__(self):
            return 3
    loader = DataLoader(tiny.data(n=N), batch_sampler=Reversed())
    assert _fit(loader, shuffle=True).global_step == 6 and _fit(loader, shuffle=False).global_step == 6


def test_a_generator_over_lazy_data_is_named_when_fit_needs_its_length():
    gen = DataGenerator((s for s in _samples()), 8, collate=_collate)
    with pytest.raises(TypeError, match="train_data must have a len"):
        _fit(gen)

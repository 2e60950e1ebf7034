"""A tiny BERT-of-Theseus run (https://kexue.fm/archives/7575): Su's recipe in miniature, on a synthetic task.

1. fine-tune a 4-layer predecessor (+ head) from a "pretrained" backbone; 2. build a 2-layer successor from
the pretrained first layers; 3. Theseus training with p = 0.5, predecessor and head frozen. The successor
alone, behind the frozen head, then solves the task it could not solve before."""
import copy
import time

import torch

import kexue
from kexue.compress import SequenceClassifier, TheseusModel, truncate_layers

CFG = dict(model_type="bert", vocab_size=24, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
           intermediate_size=48, max_position_embeddings=16, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)
TRIGGER = 5


def _data(B, g):
    """[CLS]=1 then 7 tokens from [4, 24); label 1 iff the trigger token occurs (about half the time)."""
    ids = torch.randint(6, 24, (B, 7), generator=g)
    labels = torch.randint(0, 2, (B,), generator=g)
    pos = torch.randint(0, 7, (B,), generator=g)
    ids[labels.bool(), pos[labels.bool()]] = TRIGGER
    return torch.cat([torch.ones(B, 1, dtype=torch.long), ids], 1), labels


def _accuracy(model, g):
    ids, labels = _data(512, g)
    with torch.no_grad():
        return (model(ids).logits.argmax(-1) == labels).float().mean().item()


def _fit(model, steps, g, lr=3e-3):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        ids, labels = _data(32, g)
        loss = model(ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_theseus_successor_learns_the_task_in_seconds():
    """Measured over 5 seeds x ATEN_CPU_CAPABILITY in {default, avx2, avx512}: teacher 1.000, successor
    before 0.469-0.531, after 1.000 (about 2 CPU s each). The thresholds keep >= 0.03 / 0.22 / 0.05 of margin;
    the run time is printed, not asserted (it depends on the machine)."""
    start = time.process_time()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pretrained = kexue.build_transformer_model(config=CFG)
    teacher = SequenceClassifier(copy.deepcopy(pretrained), num_classes=2)
    _fit(teacher, 80, g)
    teacher.eval()
    assert _accuracy(teacher, torch.Generator().manual_seed(1)) > 0.97

    successor = truncate_layers(pretrained, 2)
    theseus = TheseusModel(teacher.backbone, successor, teacher.head, scheduler=0.5,
                           generator=torch.Generator().manual_seed(2))
    before = _accuracy(theseus.eval(), torch.Generator().manual_seed(1))            # successor-only, untrained
    head_before = [p.clone() for p in teacher.head.parameters()]
    theseus.train()
    _fit(theseus, 120, g)
    after = _accuracy(theseus.eval(), torch.Generator().manual_seed(1))
    exported = theseus.export_successor().eval()
    print(f"successor-only accuracy {before:.3f} -> {after:.3f}, {time.process_time() - start:.1f} CPU s")
    assert before < 0.75 and after > 0.95, (before, after)
    assert _accuracy(exported, torch.Generator().manual_seed(1)) == after
    assert all(torch.equal(a, b) for a, b in zip(head_before, teacher.head.parameters()))
    assert _accuracy(teacher, torch.Generator().manual_seed(1)) > 0.97             # the teacher is untouched

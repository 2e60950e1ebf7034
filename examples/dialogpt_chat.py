"""A DialoGPT-style multi-turn chatbot, as bojone/nezha_gpt_dialog (动手做个DialoGPT：基于LM的生成式多轮对话模型,
https://kexue.fm/archives/7718): the turns of a chat joined as `[CLS] u1 [SEP] u2 [SEP] ...` with alternating
speaker segments, one causal LM trained on every turn at once, replies sampled with top-k = 5 in the flip of
the last speaker's segment; a ChatBot keeps the history.

Differs from the article: scripted two-party chats (`kexue.datasets.scripted_dialogs`: a fact, small talk, a
question whose answer is the fact 4-6 turns back) instead of LCCC; a 2-layer d=128 model from scratch instead of
NEZHA-base; lr 3e-3 (not 2e-5), no gradient accumulation; CPU-sized budgets. Metric: recall accuracy, the greedy
reply to a held-out chat's history equals its scripted answer.
"""
from __future__ import annotations

import argparse

import torch

from kexue.datasets import scripted_dialogs
from kexue.tasks import ChatBot, DialogCollator, DialogFormat, build_dialog_lm, train_dialog_lm
from kexue.tokenizers import Tokenizer, build_char_vocab

# budget -> training chats, held-out chats, steps, hidden size
BUDGETS = {"smoke": (200, 20, 5, 32), "quick": (4000, 300, 600, 128), "full": (20_000, 1000, 3000, 128)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 000 chats, 600 steps (a few minutes on CPU)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args(argv)
    budget = "smoke" if args.smoke else "quick" if args.quick else "full"
    n_train, n_test, steps, hidden = BUDGETS[budget]
    torch.manual_seed(args.seed)

    train = scripted_dialogs(n_train, seed=2 * args.seed)
    test = scripted_dialogs(n_test, seed=2 * args.seed + 1)
    tokenizer = Tokenizer(build_char_vocab([t for d in train + test for t in d.turns], min_count=1))
    print(f"data: {len(train)} scripted two-party chats of 5-8 turns ({len(test)} held out), "
          f"{tokenizer.vocab_size} characters")
    fmt = DialogFormat(max_len=96, loss_on="all_turns")
    model = build_dialog_lm(tokenizer.vocab_size, hidden=hidden, layers=2, heads=4, max_len=96)
    print(f"model: 2-layer d={hidden} Transformer with a causal mask and 2 speaker segments, from scratch; "
          f"loss on all turns, AdamW 3e-3, batch 32, {steps} steps; differs from the article: scripted chats, "
          "not LCCC; no pretrained NEZHA")

    losses = train_dialog_lm(model, DialogCollator(tokenizer, fmt), [d.turns for d in train], steps=steps,
                             batch_size=32, lr=3e-3, seed=args.seed)
    print(f"training loss: {losses[0]:.2f} -> {losses[-1]:.2f}")

    bot = ChatBot(model, tokenizer, fmt, max_new_tokens=12, top_k=args.topk)
    bot.history = ["在吗", "我叫浩然"]                                    # the bot said its name two turns ago
    print("chat (the bot spoke second):")
    for i, turn in enumerate(bot.history):
        print(f"  {'user' if i % 2 == 0 else 'bot '}: {turn}")
    for user_turn in ["你好", "你叫什么"]:
        reply = bot.chat(user_turn, seed=args.seed)
        print(f"  user: {user_turn}\n  bot : {reply}")
    samples = bot.respond(["我在杭州", "好的", "最近忙吗"], n=3, seed=args.seed)
    print(f"three top-{args.topk} replies to 我在杭州 / 好的 / 最近忙吗: {' | '.join(samples)}")

    replies = [r[0] for i in range(0, len(test), 100)
               for r in bot.respond_batch([d.turns[:-1] for d in test[i:i + 100]], greedy=True)]
    recall = sum(r == d.answer for r, d in zip(replies, test)) / len(test)
    print(f"recall accuracy on {len(test)} held-out chats (greedy reply == the fact 4-6 turns back): "
          f"{100 * recall:.1f}%")
    return {"recall_accuracy": recall, "final_train_loss": losses[-1]}


if __name__ == "__main__":
    main()

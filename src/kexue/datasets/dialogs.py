"""Seeded scripted two-party chats whose right reply depends on a fact stated turns earlier, the CPU stand-in
for LCCC in the DialoGPT article (https://kexue.fm/archives/7718, spec nlp/09 section 4).

One speaker states a fact ("我叫小明" / "我在上海" / "我喜欢苹果"), the other acknowledges it, small talk from a
bank follows (1 or 3 turns), the other speaker asks for the fact ("你叫什么") and the first one answers with it
("我叫小明"), so the answer is 4 or 6 turns after the fact. An optional opening greeting shifts who speaks first.
The speakers alternate; every chat has 5-8 turns.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from kexue._validate import check_int

__all__ = ["ScriptedDialog", "scripted_dialogs", "DIALOG_FACTS"]

_NAMES = ("小明 小红 小刚 小丽 阿强 阿华 大伟 晓峰 子涵 浩然 思远 雨桐 嘉怡 志军 建国 玉兰 秋菊 春生 文杰 海燕 "
          "俊杰 佳琪 欣怡 宇航 梦琪 子轩 一鸣 天佑 若曦 明轩").split()
_PLACES = ("北京 上海 广州 深圳 杭州 南京 成都 重庆 武汉 西安 长沙 天津 苏州 青岛 厦门 昆明 大连 沈阳 济南 福州").split()
_LIKES = ("苹果 香蕉 西瓜 火锅 面条 饺子 咖啡 绿茶 跑步 游泳 唱歌 画画 看书 下棋 爬山 钓鱼 电影 足球 篮球 吉他").split()
# kind -> (statement prefix, question, values)
DIALOG_FACTS = {"name": ("我叫", "你叫什么", _NAMES), "place": ("我在", "你在哪里", _PLACES),
                "like": ("我喜欢", "你喜欢什么", _LIKES)}
_ACKS = ("你好", "好的", "知道了", "真不错", "原来如此", "挺好的", "嗯嗯", "哦哦")
_SMALL_TALK = ("今天天气不错", "是啊挺暖和的", "最近忙吗", "还行吧", "吃饭了吗", "刚吃过", "周末去哪玩",
               "还没想好", "晚上早点睡", "好的谢谢", "工作顺利吗", "一切都好", "明天会下雨吗", "可能会吧",
               "最近看了什么书", "没怎么看", "路上堵车吗", "有一点堵", "喝点水吧", "我不渴")
_OPENERS = ("在吗", "嗨", "你好啊", "早上好")


@dataclass
class ScriptedDialog:
    """turns alternate between two speakers; the last turn is `answer`, the recall of `fact` stated at turn
    `fact_turn` (of the same speaker)."""
    turns: list[str]
    kind: str
    fact: str
    fact_turn: int

    @property
    def answer(self) -> str:
        return self.turns[-1]


def scripted_dialogs(n: int, seed: int = 0) -> list[ScriptedDialog]:
    """n chats of 5-8 turns (see the module docstring), reproducible from `seed`."""
    n, seed = check_int("n", n, 0), check_int("seed", seed)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.choice(sorted(DIALOG_FACTS))
        prefix, question, values = DIALOG_FACTS[kind]
        fact = rng.choice(values)
        turns = [rng.choice(_OPENERS)] if rng.random() < 0.5 else []
        fact_turn = len(turns)
        turns += [prefix + fact, rng.choice(_ACKS)]
        turns += rng.sample(_SMALL_TALK, rng.choice((1, 3)))           # odd: the asker speaks right after
        turns += [question, prefix + fact]
        out.append(ScriptedDialog(turns, kind, fact, fact_turn))
    return out

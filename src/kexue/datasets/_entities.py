"""Random Chinese entity strings for the synthetic SPO and NER corpora (persons, cities, schools, books,
companies). Every string belongs to one side of a fixed split, by a hash of the string, so a held-out set can
use only entity strings never seen in training, whatever the seeds."""
from __future__ import annotations

import random
import zlib

__all__ = ["ENTITY_KINDS", "entity", "side_of"]

SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰飞鹏宇浩凯琳晨欣怡婷思雨嘉子轩博文瑞梓涵晓建国志"
CITIES = ("北京 上海 广州 深圳 天津 重庆 成都 杭州 南京 武汉 西安 长沙 郑州 济南 青岛 大连 沈阳 长春 哈尔滨 "
          "苏州 无锡 宁波 温州 厦门 福州 合肥 南昌 昆明 贵阳 南宁 海口 兰州 西宁 银川 太原 石家庄 呼和浩特 "
          "乌鲁木齐 拉萨 珠海 佛山 东莞 惠州 汕头 洛阳 开封 扬州 徐州 烟台 威海 桂林 三亚 绍兴 嘉兴 泉州 "
          "唐山 保定 大同 鞍山 吉林 常州").split()
WORDS = "星光华夏远航天成金石云海明月长风东方新元蓝山青松白鹭红叶春秋古今晨曦静水流年飞雪归途"
SCHOOL_SUFFIX = ("大学", "理工大学", "师范大学", "学院")
COMPANY_SUFFIX = ("科技", "集团", "公司", "传媒")
ENTITY_KINDS = ("person", "city", "school", "book", "company")


def side_of(text: str, test_fraction: int = 4) -> str:
    """"test" for about 1 in `test_fraction` strings (fixed by a CRC-32 of the string), else "train"."""
    return "test" if zlib.crc32(text.encode("utf-8")) % test_fraction == 0 else "train"


def _draw(kind: str, rng: random.Random) -> str:
    if kind == "person":
        return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    if kind == "city":
        return rng.choice(CITIES)
    if kind == "school":
        head = rng.choice(CITIES) if rng.random() < 0.5 else rng.choice(WORDS) + rng.choice(WORDS)
        return head + rng.choice(SCHOOL_SUFFIX)
    if kind == "book":
        return "".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))
    head = rng.choice(CITIES) if rng.random() < 0.3 else ""           # a city inside a company's name
    return head + rng.choice(WORDS) + rng.choice(WORDS) + rng.choice(COMPANY_SUFFIX)


def entity(kind: str, rng: random.Random, side: str) -> str:
    """A random `kind` string from the `side` ("train" / "test") of the split (rejection sampling)."""
    if kind not in ENTITY_KINDS:
        raise ValueError(f"kind must be one of {list(ENTITY_KINDS)}, got {kind!r}")
    while True:
        text = _draw(kind, rng)
        if side_of(text) == side:
            return text

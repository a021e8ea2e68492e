"""What users read, in one catalogue: the chat's UI strings in English, Japanese and Chinese.

`text(lang, key, **values)` looks a string up (falling back to English for a language or key
the table lacks); `pick_lang(code)` turns "ja-JP", "zh-Hans-CN" or an Accept-Language header
into one of `LANGS` (or None). Series titles come from `series.json`'s `titles`, not from here
(`title_in` in bot/chat/answer.py).
"""

from __future__ import annotations

LANGS = ("en", "ja", "zh")
DEFAULT = "en"
LANG_NAMES = {"en": "English", "ja": "日本語", "zh": "中文"}

EN: dict[str, str] = {
    "status.match": "Found it",
    "status.match_two_times": "Found it — two moments of this episode fit",
    "status.match_rival": "Probably this — another scene fits almost as well",
    "status.unsure": "Not sure — here are my best guesses",
    "status.no_match": "No match — I couldn't find this in the library",
    "status.no_match_guesses": "No match — nothing in the library fits well",
    "confidence": "Confidence {pct}",
    "confidence.help": "Confidence: how likely the top answer is right",
    "episode": "Episode {n}",
    "season": "S{n}",
    "movie": "Movie",
    "opening": "Opening of {title}",
    "ending": "Ending of {title}",
    "oped": "Opening or ending of {title}",
    "at": "{where} @ {time}",
    "or_at": "{a} or {b}",
    "also": "Could also be: {line}",
    "top5": "Other candidates",
    "closest": "Closest scenes (none fits well)",
    "show_closest": "Show closest scenes",
    "no_match.hint": "Try a cleaner screenshot (no crop, no captions) or another frame of "
                     "the scene.",
    "characters": "Characters",
    "looks_like": "Looks like",
    "feedback.hint": "Right? Tap ✅ or ❌ — or the number of the right answer.",
    "synopsis": "Synopsis",
    "lang.set": "Language: English. Series titles: {titles}.",
    "lang.usage": "Use /lang en, /lang ja or /lang zh (and optionally a title language, "
                  "e.g. /lang en ja).",
    "lang.title_default": "as in the library",
    "unknown": "{n} unknown",
}

JA: dict[str, str] = {
    "status.match": "見つかりました",
    "status.match_two_times": "見つかりました — このエピソードの2つの場面が一致します",
    "status.match_rival": "おそらくこれ — ほぼ同じくらい一致する別の場面があります",
    "status.unsure": "自信がありません — 近い候補はこちら",
    "status.no_match": "一致なし — ライブラリに見つかりませんでした",
    "status.no_match_guesses": "一致なし — ライブラリによく合う場面はありません",
    "confidence": "確信度 {pct}",
    "confidence.help": "確信度: いちばん上の答えが正しい見込み",
    "episode": "第{n}話",
    "season": "第{n}期",
    "movie": "劇場版",
    "opening": "{title} のオープニング",
    "ending": "{title} のエンディング",
    "oped": "{title} のオープニングかエンディング",
    "at": "{where} {time}",
    "or_at": "{a} または {b}",
    "also": "こちらの可能性も: {line}",
    "top5": "ほかの候補",
    "closest": "近い場面（よく合うものはありません）",
    "show_closest": "近い場面を表示",
    "no_match.hint": "切り抜きや字幕のない、きれいなスクリーンショットか、同じ場面の別のコマを"
                     "送ってください。",
    "characters": "キャラクター",
    "looks_like": "ジャンル",
    "feedback.hint": "合っていますか？ ✅ か ❌、または正しい候補の番号を押してください。",
    "synopsis": "あらすじ",
    "lang.set": "言語: 日本語。作品タイトル: {titles}。",
    "lang.usage": "/lang en、/lang ja、/lang zh のどれかを使ってください（タイトルの言語も指定"
                  "できます。例: /lang ja en）。",
    "lang.title_default": "ライブラリのまま",
    "unknown": "不明 {n} 人",
}

ZH: dict[str, str] = {
    "status.match": "找到了",
    "status.match_two_times": "找到了 — 本集有两个时刻都符合",
    "status.match_rival": "可能是这个 — 另一个场景几乎同样符合",
    "status.unsure": "不确定 — 这些是最接近的猜测",
    "status.no_match": "没有匹配 — 库中找不到这个画面",
    "status.no_match_guesses": "没有匹配 — 库中没有很符合的场景",
    "confidence": "置信度 {pct}",
    "confidence.help": "置信度：第一个答案正确的可能性",
    "episode": "第{n}集",
    "season": "第{n}季",
    "movie": "电影",
    "opening": "{title} 的片头",
    "ending": "{title} 的片尾",
    "oped": "{title} 的片头或片尾",
    "at": "{where} {time}",
    "or_at": "{a} 或 {b}",
    "also": "也可能是：{line}",
    "top5": "其他候选",
    "closest": "最接近的场景（都不太符合）",
    "show_closest": "显示最接近的场景",
    "no_match.hint": "请发送没有裁剪、没有字幕的清晰截图，或同一场景的另一帧。",
    "characters": "角色",
    "looks_like": "看起来像",
    "feedback.hint": "对吗？点 ✅ 或 ❌，或点正确答案的编号。",
    "synopsis": "简介",
    "lang.set": "语言：中文。作品标题：{titles}。",
    "lang.usage": "请用 /lang en、/lang ja 或 /lang zh（也可以指定标题语言，例如 /lang zh ja）。",
    "lang.title_default": "按库中的标题",
    "unknown": "{n} 个未知",
}

TABLES: dict[str, dict[str, str]] = {"en": EN, "ja": JA, "zh": ZH}


def text(lang: str | None, key: str, **values: object) -> str:
    """The string `key` in `lang` (English when the language or the key is missing)."""
    table = TABLES.get(lang or DEFAULT, EN)
    template = table.get(key) or EN[key]
    return template.format(**values) if values else template


def pick_lang(code: str | None) -> str | None:
    """"ja-JP" → "ja", "zh-Hant-TW" → "zh", "en-GB,en;q=0.9" → "en"; None for others.

    An Accept-Language header is read in the order given (the q-values are in that order in
    every browser)."""
    if not code:
        return None
    for part in code.split(","):
        tag = part.split(";")[0].strip().lower().replace("_", "-")
        base = tag.split("-")[0]
        if base in TABLES:
            return base
    return None

"""Every string a chat user reads comes from the catalogue (bot/chat/i18n.py), in English,
Japanese and Chinese.

- the three tables have the same keys, the same {placeholders}, and no entry left in English;
- every key the code looks up (`text(lang, "key")`, `said(Error, "key")`,
  `UploadError(status, "key")`, the web page's `data-i18n` and its script's `T("key")`)
  exists;
- no English sentence is left in the chat front ends' code (Telegram, Discord, the web chat's
  Python, page and script) outside the catalogue: a scan of their string literals, with the
  few operator-only texts listed below and why.
"""

from __future__ import annotations

import ast
import re
import string
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bot.chat import i18n
from bot.chat.texts import said, user_error_text
from core.errors import Busy, IndexUnavailable, InvalidMedia, MediaTooLarge

ROOT = Path(__file__).resolve().parent.parent
BOT = ROOT / "bot"
#: The chat front ends: what Telegram, Discord and web chat users read comes from these.
FRONT_ENDS = sorted([*BOT.glob("telegram_*.py"), *BOT.glob("discord_*.py"),
                     BOT / "web.py", BOT / "web_common.py", BOT / "web_render.py",
                     *(p for p in (BOT / "chat").glob("*.py") if p.name != "i18n.py")])
#: Texts only the operator reads, and why they stay English.
OPERATOR_ONLY = {
    ("web.py", "This server does not answer to that name."): "a host name the operator did not allow",
    ("web.py", "Cross-site requests are not allowed."): "only another site's page can cause it",
    ("web.py", "The operator pages are only available on this machine"): "the operator pages",
    ("fetch.py", "AniRec (self-hosted anime recognition bot)"): "the User-Agent header",
    ("media.py", "PNG, JPEG, WebP, GIF, MP4, WebM"): "format names, the same in every language",
    ("fetch.py", "I couldn't download that picture. Try again, or attach the file itself."):
        "DownloadFailed's English fallback; users get its i18n_key (error.download)",
}
#: Functions that build the operator pages (/admin), not the chat.
OPERATOR_FUNCTIONS = {("web_render.py", f) for f in (
    "stored_candidate_text", "_facts_library", "_facts_service", "_query_view")}
#: Calls whose text is for the log or the operator's console, never a chat user.
OPERATOR_CALLS = {"debug", "info", "warning", "error", "exception", "ConfigError",
                  "ValueError", "RuntimeError", "TypeError", "KeyError", "MissingExtra"}
#: English prose: a capitalised word and at least two more words.
PROSE = re.compile(r"^[A-Z][\w'’]*[,:]?(?: +[\w'’()/.,:;-]+){2,}")
_FMT = string.Formatter()


def placeholders(s: str) -> set[str]:
    return {f for _, f, _, _ in _FMT.parse(s) if f}


def test_every_language_has_every_key_with_the_same_placeholders() -> None:
    for lang, table in i18n.TABLES.items():
        assert set(table) == set(i18n.EN), (lang, set(i18n.EN) ^ set(table))
        for key, value in table.items():
            assert value.strip(), (lang, key)
            assert placeholders(value) == placeholders(i18n.EN[key]), (lang, key)
            if lang != "en":
                assert value != i18n.EN[key], f"{lang}:{key} is still English"


def _literal_keys(tree: ast.AST) -> list[tuple[str, int]]:
    """Keys passed as a literal to text(lang, key), said(cls, key), UploadError(status, key)."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
        if name in ("text", "said", "UploadError") and len(node.args) >= 2:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((arg.value, node.lineno))
    return out


def test_every_key_the_code_looks_up_exists() -> None:
    seen = 0
    for path in sorted(BOT.rglob("*.py")):
        for key, line in _literal_keys(ast.parse(path.read_text(encoding="utf-8"))):
            seen += 1
            assert key in i18n.EN, f"{path.relative_to(ROOT)}:{line}: unknown key {key!r}"
    assert seen > 80  # the scan found the look-ups (not an empty pass)
    from bot.telegram_adapter import COMMANDS
    assert all(f"tg.cmd.{c}" in i18n.EN for c in COMMANDS)
    assert all(f"tg.auto.{a}" in i18n.EN for a in ("on", "off"))


def _prose_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))  # docstrings
        if isinstance(node, ast.FunctionDef) and (path.name, node.name) in OPERATOR_FUNCTIONS:
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in OPERATOR_CALLS:
                skip.update(id(n) for n in ast.walk(node))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
            and PROSE.match(n.value.strip()) and (path.name, n.value) not in OPERATOR_ONLY]


def test_the_scan_finds_an_english_sentence(tmp_path: Path) -> None:
    """The scan itself can fail: a reply written in the code is caught."""
    p = tmp_path / "telegram_x.py"
    p.write_text('"""Doc."""\nasync def f(msg):\n    """Doc string here ok."""\n'
                 '    logger.info("Logged text is fine here")\n'
                 '    await msg.reply_text("Only the group\'s admins can set its language.")\n')
    assert [v for _, v in _prose_literals(p)] == ["Only the group's admins can set its language."]


@pytest.mark.parametrize("path", FRONT_ENDS, ids=lambda p: str(p.relative_to(BOT)))
def test_no_english_sentence_outside_the_catalogue(path: Path) -> None:
    found = _prose_literals(path)
    assert not found, "\n".join(f"{path.relative_to(ROOT)}:{line}: {v!r}" for line, v in found)


class _Page(HTMLParser):
    """Text nodes of chat.html that are not inside a data-i18n element."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.loose: list[str] = []
        self.keys: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("data-i18n", "data-i18n-title", "data-i18n-aria-label"):
            if a.get(name):
                self.keys.append(str(a[name]))
        if tag in ("meta", "link", "input", "br", "img"):
            return
        self.in_script = tag == "script"
        self.stack.append(bool(a.get("data-i18n")) or (bool(self.stack) and self.stack[-1]))

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False
        if self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        words = re.sub(r"\{\{.*?\}\}", "", data).strip()
        if not self.in_script and re.search(r"[A-Za-z]{3,}", words) and \
                not (self.stack and self.stack[-1]):
            self.loose.append(words)


def test_the_web_page_and_its_script_take_every_text_from_the_catalogue() -> None:
    from bot.web import PAGE_KEYS

    page = _Page()
    page.feed((BOT / "templates" / "chat.html").read_text(encoding="utf-8"))
    # the brand name and the language names are the same in every language
    assert [w for w in page.loose if w not in ("AniRec", "English")] == []
    assert page.keys and set(page.keys) <= set(PAGE_KEYS)
    js = (BOT / "webstatic" / "app.js").read_text(encoding="utf-8")
    used = set(re.findall(r"\bT\(\"([\w.]+)\"", js))
    assert len(used) > 15 and used <= set(PAGE_KEYS), used - set(PAGE_KEYS)
    strings = re.findall(r"\"((?:[^\"\\\n]|\\.)*)\"", js)
    prose = [s for s in strings if PROSE.match(s) and s not in used]
    assert prose == []


def test_errors_are_said_in_the_persons_language() -> None:
    assert user_error_text(Busy(4), "ja") == "ただいま混み合っています。4 秒後にもう一度お試しください。"
    assert user_error_text(IndexUnavailable("No index in /srv/x (no manifest.json)"), "zh") == \
        i18n.ZH["error.index"]
    e = said(MediaTooLarge, "error.too_large_size", size="30 MB", limit="20 MB")
    assert str(e) == "That file is too large (30 MB); I can read files up to 20 MB."
    assert user_error_text(e, "ja") == "ファイルが大きすぎます（30 MB）。読めるのは 20 MB までです。"
    # a specific English message of core: as is in English, its class's sentence elsewhere
    gif = InvalidMedia("That GIF has too many frames.")
    assert user_error_text(gif, "en") == "That GIF has too many frames."
    assert user_error_text(gif, "zh") == i18n.ZH["error.invalid"]
    assert user_error_text(RuntimeError("/srv/secret"), "ja") == i18n.JA["error.generic"]

"""The Discord adapter's link downloads (a tiny local web server), its embed rendering, and the
named-faces picture (with a stub service).
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.chat.fetch import DownloadFailed, LinkFetcher
from bot.discord_media import links_in, media_link
from bot.discord_render import (
    ADULT_TITLE,
    ANNOTATED_NAME,
    render_answer,
)
from core.errors import MediaTooLarge, UnsupportedMedia
from core.media import MediaLimits
from core.types import Candidate, CharacterHit, Recognition, SeriesInfo
from tests import discord_helpers
from tests.discord_helpers import answer_to, embed_of, png_attachment, preview_of, qid_of, running
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.media import faces_jpeg
from tests.preview_split import SplitPreview

# The shared fixtures (pytest finds them as attributes of this module).
dc = discord_helpers.dc
_no_unexpected_errors = discord_helpers._no_unexpected_errors
web_server = discord_helpers.web_server

pytestmark = pytest.mark.timeout(60)  # the first test also pays for indexing

# -- links (a tiny local web server: `discord_helpers.web_server`) ---------------------------------

async def test_link_fetcher_limits(web_server: str, indexed_home: Any) -> None:
    fetcher = LinkFetcher(allow_private=True, timeout=0.5)
    try:
        assert await fetcher.fetch(f"{web_server}/image.png", 10_000_000) == \
            indexed_home.frame_png(0, 6.0)
        assert await fetcher.fetch(f"{web_server}/to-image.png", 10_000_000)  # http redirect
        with pytest.raises(DownloadFailed, match="http"):
            await fetcher.fetch(f"{web_server}/to-file.png", 10_000_000)
        with pytest.raises(UnsupportedMedia):
            await fetcher.fetch(f"{web_server}/page.png", 10_000_000)
        with pytest.raises(MediaTooLarge):
            await fetcher.fetch(f"{web_server}/endless.png", 1_000_000)
        with pytest.raises(DownloadFailed, match="too long"):
            await fetcher.fetch(f"{web_server}/slow.png", 10_000_000)
        with pytest.raises(DownloadFailed):
            await fetcher.fetch("ftp://example.com/a.png", 10_000_000)
    finally:
        await fetcher.close()
    public_only = LinkFetcher()
    try:
        with pytest.raises(DownloadFailed):  # a literal private address: refused up front
            await public_only.fetch(f"{web_server}/image.png", 10_000_000)
        port = web_server.rsplit(":", 1)[1]
        with pytest.raises(DownloadFailed):  # a name resolving to loopback: the resolver
            await public_only.fetch(f"http://localhost:{port}/image.png", 10_000_000)
    finally:
        await public_only.close()


@pytest.mark.parametrize(("text", "found"), [
    ("https://example.com/shot.PNG", ["https://example.com/shot.PNG"]),
    ("see (https://example.com/a/b.jpg).", ["https://example.com/a/b.jpg"]),
    ("<https://cdn.discordapp.com/attachments/1/2/image?ex=abc>",
     ["https://cdn.discordapp.com/attachments/1/2/image?ex=abc"]),
    ("https://example.com/clip.webm?x=1 https://example.com/clip.webm?x=1",
     ["https://example.com/clip.webm?x=1"]),
    ("https://example.com/page.html ftp://example.com/a.png javascript:alert(1).png", []),
])
def test_links_in(text: str, found: list[str]) -> None:
    assert links_in(text) == found
    assert all(media_link(u) for u in found)


# -- rendering -------------------------------------------------------------------------------------

def _cand(i: int, *, adult: bool = False, preview: str | None = None,
          still: str | None = None) -> Candidate:
    name = f"*Bold* _Title_ {i} `x` ||y||"
    return Candidate(series=SeriesInfo(i, name, {"ja": f"題名{i}"}, is_adult=adult),
                     episode_id=i, season=2, episode=3, episode_label="03", time=75.0,
                     time_from=74.0, time_to=77.0, score=0.9 - i / 10, preview=preview,
                     still=still)


def view_buttons(view: Any) -> list[str]:
    """What a person sees on the buttons under an answer (the emoji, else the label)."""
    return [str(b.emoji) if b.emoji else b.label for b in view.children]


def test_render_escapes_and_unsure_wording() -> None:
    rec = Recognition(status="unsure", confidence=0.41,
                      candidates=tuple(_cand(i) for i in range(1, 4)),
                      characters=(CharacterHit("Mika_chan", "x", 0.9, (0, 0, 9, 9)),),
                      genres=(("Drama", 0.8),), query_id="abcDEF_12-3")
    out = render_answer(rec, adult_ok=False)
    e = out.embed.to_dict()
    assert e["title"] == r"\*Bold\* \_Title\_ 1 \`x\` \|\|y\|\|"
    assert "Not sure — here are my best guesses · Confidence 41%" in e["description"]
    assert "S2 · Episode 3" in e["description"] and "00:01:14–00:01:17" in e["description"]
    assert [f["name"] for f in e["fields"]] == ["Other candidates", "Characters", "Looks like"]
    assert "%" not in e["fields"][0]["value"]  # one confidence number, in the description
    assert e["fields"][1]["value"] == r"Mika\_chan"
    assert "abcDEF_12-3" not in e["footer"]["text"]  # no internal ids in the footer
    assert view_buttons(out.view) == ["✅", "❌", "1", "2", "3"] and out.attachments == []
    assert {b.custom_id for b in out.view.children} >= {"fb:abcDEF_12-3:ok", "fb:abcDEF_12-3:3"}


def test_render_no_match_and_adult_and_budget(tmp_path: Path) -> None:
    clip, still = tmp_path / "c.mp4", tmp_path / "s.jpg"
    clip.write_bytes(b"\0" * 5000)
    still.write_bytes(b"\0" * 1000)
    nothing = render_answer(Recognition(status="no_match", confidence=0.0, query_id="q1"))
    assert nothing.embed.title == "No match — I couldn't find this in the library"
    assert nothing.view is None and nothing.n_candidates == 0
    guesses = render_answer(Recognition(status="no_match", confidence=0.1,
                                        candidates=(_cand(1),), query_id="q2"))
    # a no-match: no votes, no fields, the guesses behind "Show closest scenes"
    assert guesses.embed.title.startswith("No match") and not guesses.embed.fields
    assert view_buttons(guesses.view) == ["Show closest scenes"] and guesses.closest
    adult = Recognition(status="match", confidence=0.9, query_id="q3",
                        candidates=(_cand(1, adult=True, preview=str(clip), still=str(still)),))
    hidden = render_answer(adult, adult_ok=False)
    assert hidden.embed.title == ADULT_TITLE and hidden.hidden
    assert [a.filename for a in hidden.attachments] == ["SPOILER_preview.mp4"]
    shown = render_answer(adult, adult_ok=True)
    assert [a.filename for a in shown.attachments] == ["preview.mp4", "preview.jpg"]
    assert shown.embed.thumbnail.url == "attachment://preview.jpg"
    small = render_answer(adult, adult_ok=True, budget=2000)  # the clip does not fit
    assert [a.filename for a in small.attachments] == ["preview.jpg"]
    assert small.embed.image.url == "attachment://preview.jpg"
    assert view_buttons(shown.view) == ["✅", "❌"]  # one candidate: ✅ says it all


# -- the named-faces picture -----------------------------------------------------------------------


def png_of(color: tuple[int, int, int] = (200, 100, 50)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, format="PNG")
    return out.getvalue()


class StubService(SplitPreview):
    """Just what the cog calls to answer a picture; `recognize` returns what it is given."""

    def __init__(self, result: Recognition) -> None:
        super().__init__()
        self.limits = MediaLimits()
        self.result = result

    async def recognize(self, data: bytes, *, source: Any, sticker: bool = False,
                        with_preview: bool = True) -> Recognition:
        return self.answer(self.result)


def faces_recognition(annotated: Path | None, still: Path | None = None) -> Recognition:
    best = Candidate(series=SeriesInfo(1, "Some Show"), episode_id=1, season=None, episode=2,
                     episode_label="02", time=5.0, time_from=4.0, time_to=6.0, score=0.97,
                     still=str(still) if still else None)
    return Recognition(status="match", confidence=0.97, candidates=(best,),
                       characters=(CharacterHit("Mika_chan", "Some Show", 0.9, (20, 20, 60, 70)),
                                   CharacterHit("unknown", None, 0.2, (90, 20, 130, 70))),
                       annotated=str(annotated) if annotated else None, query_id="facesQ01")


def test_render_annotated_is_the_thumbnail_within_the_budget(tmp_path: Path) -> None:
    clip, still = tmp_path / "c.mp4", tmp_path / "s.jpg"
    clip.write_bytes(b"\0" * 5000)
    still.write_bytes(b"\0" * 1000)
    faces = faces_jpeg(tmp_path / "faces.jpg")
    cand = _cand(1, preview=str(clip), still=str(still))
    rec = Recognition(status="match", confidence=0.9, candidates=(cand,), query_id="q1",
                      characters=(CharacterHit("Mika", "x", 0.9, (0, 0, 9, 9)),),
                      annotated=str(faces))
    # A clip: the named faces take the thumbnail from the clip's still.
    out = render_answer(rec, adult_ok=True)
    assert [a.filename for a in out.attachments] == ["preview.mp4", ANNOTATED_NAME]
    assert out.embed.thumbnail.url == f"attachment://{ANNOTATED_NAME}"
    # No clip: the still stays the embed image, the faces are the thumbnail.
    no_clip = replace(rec, candidates=(replace(cand, preview=None),))
    out = render_answer(no_clip, adult_ok=True)
    assert [a.filename for a in out.attachments] == ["preview.jpg", ANNOTATED_NAME]
    assert out.embed.image.url == "attachment://preview.jpg"
    assert out.embed.thumbnail.url == f"attachment://{ANNOTATED_NAME}"
    # Too big for what is left of the budget: the answer is as it was without it.
    tight = render_answer(rec, adult_ok=True, budget=5000 + 1000)
    assert [a.filename for a in tight.attachments] == ["preview.mp4", "preview.jpg"]
    assert tight.embed.thumbnail.url == "attachment://preview.jpg"
    # Withheld adult series: a blurred file, not in the embed.
    adult = replace(rec, candidates=(_cand(1, adult=True, preview=str(clip), still=str(still)),))
    hidden_out = render_answer(adult, adult_ok=False)
    assert [a.filename for a in hidden_out.attachments] == ["SPOILER_preview.mp4",
                                                            "SPOILER_" + ANNOTATED_NAME]
    assert not hidden_out.embed.thumbnail and not hidden_out.embed.image
    # Gone, or gone between rendering and sending: left out, the embed no longer points at it.
    assert ANNOTATED_NAME not in [a.filename for a in render_answer(
        replace(rec, annotated=str(tmp_path / "nope.jpg"))).attachments]
    late = render_answer(no_clip, adult_ok=True)
    faces.unlink()
    assert [f.filename for f in late.files()] == ["preview.jpg"]
    assert not late.embed.thumbnail and late.embed.image.url == "attachment://preview.jpg"


async def test_annotated_faces_go_as_the_embed_thumbnail(dc: FakeDiscord, tmp_path: Path) -> None:
    still = faces_jpeg(tmp_path / "still.jpg", boxes=())
    faces = faces_jpeg(tmp_path / "faces.jpg")
    alice = dc.users[0]
    async with running(dc, StubService(faces_recognition(faces, still))):
        msg = dc.message_create(dc.text_channel, alice, "who is this?",
                                attachments=[png_attachment(dc, png_of())])
        [answer] = await answer_to(dc, msg)
        post = await preview_of(dc, answer)  # the still and named faces follow the answer
    assert [f.filename for f in post.files] == ["preview.jpg", ANNOTATED_NAME]
    assert post.files[1].data == faces.read_bytes()
    assert qid_of(answer) == "facesQ01" and embed_of(answer)["title"] == "Some Show"
    embed = embed_of(post)
    assert embed["thumbnail"]["url"] == f"attachment://{ANNOTATED_NAME}"
    assert embed["image"]["url"] == "attachment://preview.jpg"
    assert [f["value"] for f in embed["fields"] if f["name"] == "Characters"] == [
        r"Mika\_chan, 1 unknown"]
    # What Discord made of it: the thumbnail is the uploaded characters.jpg.
    [sent] = dc.sent_messages(dc.text_channel)
    by_name = {a["filename"]: a for a in sent["attachments"]}
    assert set(by_name) == {"preview.jpg", ANNOTATED_NAME}
    assert sent["embeds"][0]["thumbnail"]["url"] == by_name[ANNOTATED_NAME]["url"]


async def test_missing_annotated_file_is_left_out(dc: FakeDiscord, tmp_path: Path) -> None:
    still = faces_jpeg(tmp_path / "still.jpg", boxes=())
    rec = faces_recognition(tmp_path / "evicted.jpg", still)
    alice = dc.users[0]
    async with running(dc, StubService(rec)):
        msg = dc.message_create(dc.text_channel, alice, "who is this?",
                                attachments=[png_attachment(dc, png_of())])
        [answer] = await answer_to(dc, msg)
        post = await preview_of(dc, answer)
    assert [f.filename for f in post.files] == ["preview.jpg"]
    embed = embed_of(post)
    assert "thumbnail" not in embed and embed["image"]["url"] == "attachment://preview.jpg"
    assert embed["title"] == "Some Show" and qid_of(answer) == "facesQ01"

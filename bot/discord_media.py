"""Which media a Discord message carries: image and clip attachments, picture stickers (a
Lottie sticker is refused with a friendly text) and media links in the text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

import discord
import yarl

from bot.chat.i18n import text
from bot.chat.media import MEDIA_EXTS, MEDIA_FORMATS, extension, media_kind
from bot.chat.texts import said
from core.errors import AniRecError, UnsupportedMedia

DISCORD_CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
_URL = re.compile(r"https?://[^\s<>|\"']+", re.IGNORECASE)

#: The English refusals (users read them in their language: `user_error_text`).
UNSUPPORTED_FILE = text("en", "error.not_media", formats=MEDIA_FORMATS)
LOTTIE_STICKER = text("en", "error.lottie")


def not_media() -> UnsupportedMedia:
    """The refusal of a file that is no picture or clip."""
    return said(UnsupportedMedia, "error.not_media", formats=MEDIA_FORMATS)


@dataclass(frozen=True)
class MediaRef:
    """One thing to recognise: an attachment, a sticker or a link."""

    kind: str  # "attachment", "sticker", "link"
    name: str
    size: int | None = None  # declared bytes (attachments)
    attachment: discord.Attachment | None = None
    sticker: discord.StickerItem | None = None
    url: str | None = None

    @property
    def is_sticker(self) -> bool:
        return self.kind == "sticker"


@dataclass
class Found:
    """The media in one message, and the first thing that could not be used."""

    refs: list[MediaRef]
    problem: AniRecError | None = None


def is_media_attachment(att: discord.Attachment) -> bool:
    """Images and clips, by content type, else by file name."""
    return media_kind(att.content_type, att.filename) is not None


def media_link(url: str) -> bool:
    """An http(s) URL whose path ends in an image/clip extension, or a Discord CDN
    attachment link."""
    try:
        u = yarl.URL(url)
    except ValueError:
        return False
    if u.scheme not in ("http", "https") or not u.host:
        return False
    if extension(unquote(u.path)) in MEDIA_EXTS:
        return True
    return u.host.lower() in DISCORD_CDN_HOSTS and u.path.startswith(
        ("/attachments/", "/ephemeral-attachments/"))


def links_in(text: str) -> list[str]:
    """Media links in a message's text, in order, without duplicates."""
    out: list[str] = []
    for m in _URL.finditer(text or ""):
        url = m.group(0).rstrip(".,;:!?)]}>*_~")
        if media_link(url) and url not in out:
            out.append(url)
    return out


def find_media(message: discord.Message) -> Found:
    """Attachments, stickers and links in `message` that AniRec can look at."""
    refs: list[MediaRef] = []
    problem: AniRecError | None = None
    for att in message.attachments:
        if is_media_attachment(att):
            refs.append(MediaRef("attachment", att.filename, size=att.size, attachment=att))
        elif problem is None:
            problem = not_media()
    for st in message.stickers:
        if st.format is discord.StickerFormatType.lottie:
            problem = problem or said(UnsupportedMedia, "error.lottie")
        else:
            refs.append(MediaRef("sticker", st.name, sticker=st))
    links = links_in(message.content)
    links += [u for u in embed_media(message.embeds) if u not in links]
    for url in links:
        refs.append(MediaRef("link", url.rsplit("/", 1)[-1][:64], url=url))
    return Found(refs, problem)


def embed_media(embeds: list[discord.Embed]) -> list[str]:
    """Pictures and clips inside embeds: a Tenor/GIPHY link's clip ("gifv": its video),
    an image link's preview, a bot's or webhook's embed image. One per embed."""
    out: list[str] = []
    for e in embeds:
        video = e.video.url if e.type == "gifv" and e.video else None
        thumb = e.thumbnail.url if e.type in ("image", "gifv") and e.thumbnail else None
        image = e.image.url if e.image else None
        for url in (video, image, thumb, e.url if e.type == "image" else None):
            if url and media_link(url):
                if url not in out:
                    out.append(url)
                break
    return out

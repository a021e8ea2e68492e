"""What a file is, by its MIME type and name: a picture, a GIF, a clip, or nothing AniRec
can look at; and the content type a served file goes out with."""

from __future__ import annotations

import enum
from pathlib import PurePath, PurePosixPath


class MediaKind(enum.Enum):
    """The kinds of file AniRec recognises."""

    IMAGE = "image"
    GIF = "gif"
    CLIP = "clip"


IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".jfif", ".gif", ".webp", ".bmp"})
CLIP_EXTS = frozenset({".mp4", ".webm", ".mov", ".m4v"})
MEDIA_EXTS = IMAGE_EXTS | CLIP_EXTS
#: What to tell people AniRec reads.
MEDIA_FORMATS = "PNG, JPEG, WebP, GIF, MP4, WebM"
CLIP_TYPES = frozenset({"video/mp4", "video/webm", "video/quicktime", "video/x-m4v"})
#: Content types that say nothing: the file name decides.
BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", ""})
SVG_TYPE = "image/svg+xml"

#: Content types of the files the web chat serves, by suffix.
CONTENT_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".jpg": "image/jpeg",
                 ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
                 ".webp": "image/webp"}


def extension(name: str) -> str:
    """The lower-case suffix of a file name or URL path ("" when there is none)."""
    return PurePosixPath(name.lower()).suffix


def mime_of(content_type: str | None) -> str:
    """The bare, lower-case MIME type of a Content-Type value."""
    return (content_type or "").split(";")[0].strip().lower()


def _by_name(name: str) -> MediaKind | None:
    ext = extension(name)
    if ext == ".gif":
        return MediaKind.GIF
    if ext in IMAGE_EXTS:
        return MediaKind.IMAGE
    if ext in CLIP_EXTS:
        return MediaKind.CLIP
    return None


def media_kind(content_type: str | None, name: str, *, svg: bool = False) -> MediaKind | None:
    """The kind of a file by its content type, else (an uninformative type) by its name.

    SVG pictures count only with `svg` (they are drawings, not screenshots).
    """
    mime = mime_of(content_type)
    if mime == "image/gif":
        return MediaKind.GIF
    if mime == SVG_TYPE:
        return MediaKind.IMAGE if svg else None
    if mime.startswith("image/"):
        return MediaKind.IMAGE
    if mime in CLIP_TYPES:
        return MediaKind.CLIP
    if mime in BINARY_TYPES:
        return _by_name(name)
    return None


def fetchable_type(content_type: str | None) -> bool:
    """Whether a downloaded link's content type may be a picture or clip (uninformative
    types included: the service checks the bytes)."""
    mime = mime_of(content_type)
    return mime.startswith("image/") or mime in CLIP_TYPES or mime in BINARY_TYPES


def content_type(path: PurePath) -> str:
    """The Content-Type a served file goes out with."""
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")

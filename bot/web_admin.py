"""The operator pages (`/admin`): service and library numbers, the wrong-answers queue where
the operator picks the right candidate (seeing the query's picture when it is kept and each
candidate's stored frame) and marks an item resolved, recent queries and the character
contact sheets.
The page is the `admin.html` template over `bot.web_render.admin_view`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import aiohttp_jinja2
from aiohttp import web

from bot.chat.media import content_type
from bot.chat.texts import user_error_text
from bot.web_common import (
    OPERATOR,
    UploadError,
    WebContext,
    ctx_of,
    error_response,
    json_error,
    parse_vote,
    read_json_body,
)
from bot.web_render import Row, admin_view
from core.errors import NotFound
from core.types import Verdict

#: Admin header: operator actions must carry it (a cross-site form cannot set it).
ADMIN_HEADER = "X-AniRec-Admin"
SHEET_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}


def contact_sheets(folder: Path | None) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    try:
        return sorted(p.name for p in folder.iterdir()
                      if p.is_file() and p.suffix.lower() in SHEET_SUFFIXES)
    except OSError:
        return []


def _admin_data(ctx: WebContext) -> tuple[Row, Sequence[Row], Sequence[Row], dict[str, int]]:
    from core.status import library_status

    status = library_status(ctx.sessions, ctx.index_dir, ctx.framestore_dir)
    store = ctx.service.store
    recent = store.recent(50)
    wrong = store.wrong_answers(50)
    me = store.hash_id(OPERATOR.platform, OPERATOR.user_id)[:12]
    picks: dict[str, int] = {}
    for q in wrong:
        for f in store.active_feedback(q["id"]):
            if f["user"] == me and f["verdict"] == Verdict.PICK.value and f["rank"]:
                picks[q["id"]] = int(f["rank"])
    return status, recent, wrong, picks


async def admin_page(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    loop = asyncio.get_running_loop()
    status, recent, wrong, picks = await loop.run_in_executor(None, _admin_data, ctx)
    stats = await ctx.service.stats()
    sheets_dir = ctx.contact_sheets_dir
    sheets = contact_sheets(sheets_dir) if sheets_dir is not None and sheets_dir.is_dir() else None
    page = aiohttp_jinja2.render_string(
        "admin.html", request, admin_view(status, stats, recent, wrong, picks, sheets))
    # Belt and braces: the operator's own folders never appear, even inside a version string.
    for folder in {ctx.index_dir.parent.resolve(), ctx.index_dir.parent}:
        if folder.is_absolute() and len(folder.parts) > 1:
            page = page.replace(str(folder), "…")
    return web.Response(text=page, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


async def admin_pick(request: web.Request) -> web.Response:
    """POST {query_id, rank}: the operator says which candidate was right."""
    if request.headers.get(ADMIN_HEADER) != "1":
        return json_error(403, "Operator actions need the operator page.")
    svc = ctx_of(request).service
    try:
        body = await read_json_body(request)
        qid, _, rank = parse_vote({**body, "verdict": Verdict.PICK.value})
    except UploadError as exc:
        return json_error(exc.status, exc.message)
    try:
        tally = await svc.record_feedback(qid, Verdict.PICK, source=OPERATOR, rank=rank)
    except NotFound as exc:
        return json_error(404, user_error_text(exc))
    except ValueError:
        return json_error(400, "That answer does not have that many candidates.")
    return web.json_response({"tally": tally.as_dict(), "message": f"Recorded: answer {rank}."})


def _stored_frame(ctx: WebContext, query_id: str, rank: int) -> bytes | None:
    """The JPEG of the stored frame behind candidate `rank` of an answer (None: not kept)."""
    from core.framestore import FrameStore

    q = ctx.service.store.get_query(query_id)
    frames, top5 = q.get("frames") or [], q.get("top5") or []
    if not 1 <= rank <= min(len(frames), len(top5)):
        return None
    episode = top5[rank - 1].get("episode_id")
    store = FrameStore(ctx.framestore_dir)
    if not isinstance(episode, int) or not store.has(episode):
        return None
    try:
        pack = store.read(episode)
        return pack.jpeg(pack.index_of(frames[rank - 1]))
    except (KeyError, OSError, ValueError):
        return None


async def admin_frame(request: web.Request) -> web.Response:
    """The stored frame behind one candidate of an answer in the wrong-answers queue."""
    ctx = ctx_of(request)
    try:
        rank = int(request.match_info["rank"])
        data = await asyncio.get_running_loop().run_in_executor(
            None, _stored_frame, ctx, request.match_info["qid"], rank)
    except (ValueError, NotFound):
        data = None
    if data is None:
        return error_response(request, 404, "That frame is not stored.")
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def admin_query_image(request: web.Request) -> web.StreamResponse:
    """The query's own picture, when the operator keeps them (ANIREC_STORE_QUERY_IMAGES)."""
    ctx = ctx_of(request)
    try:
        q = ctx.service.store.get_query(request.match_info["qid"])
    except NotFound:
        q = None
    path = Path(q["image_path"]) if q and q.get("image_path") else None
    if path is None or not path.is_file():
        return error_response(request, 404, "That picture is not kept.")
    data = path.read_bytes()
    return web.Response(body=data, content_type=_sniff(data), headers={"Cache-Control": "no-store"})


def _sniff(data: bytes) -> str:
    """The image type of stored query bytes (they are kept under their hash, no suffix)."""
    for magic, kind in ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif")):
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


async def admin_resolve(request: web.Request) -> web.Response:
    """POST {query_id, resolved}: take an answer out of (or back into) the queue; its votes stay."""
    from core.feedback_ops import resolve

    if request.headers.get(ADMIN_HEADER) != "1":
        return json_error(403, "Operator actions need the operator page.")
    ctx = ctx_of(request)
    try:
        body = await read_json_body(request)
    except UploadError as exc:
        return json_error(exc.status, exc.message)
    qid = body.get("query_id")
    if not isinstance(qid, str) or not qid or len(qid) > 64:
        return json_error(400, "query_id is missing.")
    done = body.get("resolved", True) is not False
    try:
        await asyncio.get_running_loop().run_in_executor(None, resolve, ctx.service.store, qid, done)
    except NotFound as exc:
        return json_error(404, user_error_text(exc))
    return web.json_response({"resolved": done, "message": "Resolved." if done else "Back in the queue."})


async def admin_sheet(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    name = request.match_info["name"]
    if name not in contact_sheets(ctx.contact_sheets_dir):
        return error_response(request, 404, "Not found.")
    assert ctx.contact_sheets_dir is not None
    path = ctx.contact_sheets_dir / name
    return web.FileResponse(path, headers={"Content-Type": content_type(path)})


def add_admin_routes(app: web.Application) -> None:
    """The operator page, its pick action and the contact sheets."""
    app.router.add_get("/admin", admin_page)
    app.router.add_post("/admin/api/pick", admin_pick)
    app.router.add_post("/admin/api/resolve", admin_resolve)
    app.router.add_get("/admin/query/{qid}/image", admin_query_image)
    app.router.add_get("/admin/query/{qid}/frame/{rank}", admin_frame)
    app.router.add_get("/admin/contact-sheets/{name}", admin_sheet)

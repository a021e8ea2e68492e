"""Rate limits and the queue: a request turned away (busy or rate-limited) uses up none of
its sender's allowance, so a burst cannot lock a person out for a minute."""

from __future__ import annotations

import asyncio
from typing import Any

from core.errors import Busy, RateLimited
from core.types import Source

ME = Source("cli", chat_id="limits", user_id="limits-user")


async def test_busy_does_not_use_up_the_allowance(make_service: Any, indexed_home: Any) -> None:
    svc = await make_service(rate=3, queue_size=1)
    img = indexed_home.frame_png(0, 8.0)
    burst = await asyncio.gather(*(svc.recognize(img, source=ME, with_preview=False) for _ in range(6)),
                                 return_exceptions=True)
    answered = [r for r in burst if not isinstance(r, BaseException)]
    busy = [r for r in burst if isinstance(r, Busy)]
    assert len(answered) == 1 and len(busy) == 5  # turned away as busy, not as rate-limited
    later = []
    for _ in range(3):
        try:
            later.append(await svc.recognize(img, source=ME, with_preview=False))
        except RateLimited as exc:
            later.append(exc)
    assert [isinstance(r, RateLimited) for r in later] == [False, False, True]  # 3 admitted in all


async def test_rate_limited_does_not_count_either(make_service: Any, indexed_home: Any) -> None:
    svc = await make_service(rate=1)
    img = indexed_home.frame_png(0, 8.0)
    await svc.recognize(img, source=ME, with_preview=False)
    for _ in range(5):
        try:
            await svc.recognize(img, source=ME, with_preview=False)
        except RateLimited:
            pass
    q = svc._user_rate._hits[f"cli:{ME.user_id}"]
    assert len(q) == 1  # the refused ones were not recorded

"""Small helpers over matrix-nio shared by the scenarios."""

import asyncio
from typing import Callable

from nio import AsyncClient, SyncResponse


async def sync(client: AsyncClient, timeout_ms: int = 0, **kwargs) -> SyncResponse:
    response = await client.sync(timeout=timeout_ms, **kwargs)
    assert isinstance(response, SyncResponse), response
    return response


async def sync_until(
    client: AsyncClient,
    done: Callable[[SyncResponse], bool],
    seconds: float = 10,
    **kwargs,
) -> SyncResponse:
    """Long-polls from the client's own position until `done` holds for a response."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        response = await sync(client, timeout_ms=2000, **kwargs)
        if done(response):
            return response
    raise AssertionError(f"{client.user_id}: condition not met within {seconds} s")


def timeline(response: SyncResponse, room_id: str) -> list:
    room = response.rooms.join.get(room_id)
    return room.timeline.events if room else []


def bodies(events) -> list[str]:
    return [e.source["content"].get("body") for e in events if e.source.get("type") == "m.room.message"]

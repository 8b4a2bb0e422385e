"""Messages as matrix-nio sends and receives them: ordering across incremental syncs and a
stale reconnect, relations built the way clients build them, redaction, typing, receipts,
unread counts, and scrolling back."""

import asyncio

from nio.api import ReceiptType
from nio import (
    MessageDirection,
    RedactedEvent,
    RoomMessagesResponse,
    RoomRedactResponse,
    RoomSendResponse,
    ReceiptEvent,
    RoomCreateResponse,
    RoomPreset,
)

from matrix import bodies, sync, sync_until, timeline


async def room_with(alice, *others) -> str:
    created = await alice.room_create(preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    for other in others:
        await other.join(created.room_id)
    return created.room_id


async def send(client, room: str, body: str, **extra) -> str:
    response = await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": body, **extra})
    assert isinstance(response, RoomSendResponse), response
    return response.event_id


async def test_two_hundred_interleaved_messages_arrive_once_in_order(server, clients):
    alice = await clients.register("alice")
    bob = await clients.register("bob")
    carol = await clients.register("carol")
    room = await room_with(alice, bob, carol)
    first = await sync(carol, sync_filter={"room": {"timeline": {"limit": 20}}})
    stale = first.next_batch

    async def sender(client, name):
        for i in range(100):
            await send(client, room, f"{name}-{i}")

    # Carol syncs while both send; then syncs until all 200 are there.
    sending = asyncio.gather(sender(alice, "a"), sender(bob, "b"))
    seen: list[str] = []
    ids: list[str] = []
    rounds = 0
    gaps = 0

    async def absorb(response):
        nonlocal gaps
        room_info = response.rooms.join.get(room)
        if room_info is None:
            return
        events = room_info.timeline.events
        if room_info.timeline.limited:
            # Fill the gap back to what carol had, with the library's own pagination.
            gaps += 1
            missing = []
            token = room_info.timeline.prev_batch
            while True:
                page = await carol.room_messages(room, start=token, limit=30)
                assert isinstance(page, RoomMessagesResponse), page
                older = [e for e in page.chunk if e.event_id not in ids]
                known = len(older) < len(page.chunk)
                missing = list(reversed(older)) + missing
                if known or not page.chunk or page.end is None:
                    break
                token = page.end
            events = missing + events
        for event in events:
            ids.append(event.event_id)
            seen.extend(bodies([event]))

    while len([b for b in seen if b and b[0] in "ab"]) < 200:
        rounds += 1
        assert rounds < 500, f"only {len(seen)} messages after {rounds} syncs"
        await absorb(await sync(carol, timeout_ms=1000, sync_filter={"room": {"timeline": {"limit": 20}}}))
    await sending
    assert len(ids) == len(set(ids)), "an event arrived twice"
    mine = [b for b in seen if b and b[0] in "ab"]
    assert sorted(mine) == sorted([f"a-{i}" for i in range(100)] + [f"b-{i}" for i in range(100)])
    for name in "ab":
        assert [b for b in mine if b[0] == name] == [f"{name}-{i}" for i in range(100)]
    # The server's order is the one /messages gives back, and carol saw exactly that order.
    order = []
    token = None
    while True:
        page = await alice.room_messages(room, start=token or "", limit=100, direction=MessageDirection.back)
        order = [e.source["content"].get("body") for e in page.chunk if e.source["type"] == "m.room.message"][::-1] + order
        if not page.chunk or page.end is None:
            break
        token = page.end
    assert order == mine
    assert rounds > 1

    # Reconnecting with the stale first token replays everything after it, once, in order.
    again = clients.new(carol.user_id, carol.device_id)
    again.access_token = carol.access_token
    replay = await again.sync(timeout=0, since=stale, sync_filter={"room": {"timeline": {"limit": 100}}})
    info = replay.rooms.join[room]
    assert info.timeline.limited is True
    tail = bodies(info.timeline.events)
    assert tail == mine[-len(tail):] and len(tail) == 100


async def test_edits_replies_threads_and_reactions(server, clients):
    alice = await clients.register("alice")
    bob = await clients.register("bob")
    room = await room_with(alice, bob)
    original = await send(alice, room, "회의 3시")
    edit = await send(
        alice,
        room,
        "* 회의 4시",
        **{"m.new_content": {"msgtype": "m.text", "body": "회의 4시"},
           "m.relates_to": {"rel_type": "m.replace", "event_id": original}},
    )
    reply = await send(bob, room, "알겠어요", **{"m.relates_to": {"m.in_reply_to": {"event_id": original}}})
    threaded = await send(
        bob, room, "스레드에서",
        **{"m.relates_to": {"rel_type": "m.thread", "event_id": original, "is_falling_back": True,
                            "m.in_reply_to": {"event_id": original}}},
    )
    reaction = await bob.room_send(
        room, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "👍"}}
    )
    assert isinstance(reaction, RoomSendResponse), reaction
    twice = await bob.room_send(
        room, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "👍"}}
    )
    assert twice.status_code == "M_DUPLICATE_ANNOTATION", twice

    # Bob editing alice's message is refused.
    forged = await bob.room_send(
        room, "m.room.message",
        {"msgtype": "m.text", "body": "* 취소", "m.new_content": {"msgtype": "m.text", "body": "취소"},
         "m.relates_to": {"rel_type": "m.replace", "event_id": original}},
    )
    assert forged.status_code in ("M_FORBIDDEN", "M_BAD_JSON", "M_INVALID_PARAM"), forged

    event = await bob.room_get_event(room, original)
    relations = event.event.source["unsigned"]["m.relations"]
    assert relations["m.replace"]["event_id"] == edit
    assert relations["m.thread"]["count"] == 1
    assert relations["m.thread"]["latest_event"]["event_id"] == threaded

    children = [e.event_id async for e in bob.room_get_event_relations(room, original)]
    assert set(children) >= {edit, threaded, reaction.event_id}
    threads = [e.event_id async for e in alice.room_get_threads(room)]
    assert threads == [original]
    got = await sync_until(alice, lambda r: reply in [e.event_id for e in timeline(r, room)])
    replied = next(e for e in timeline(got, room) if e.event_id == reply)
    assert replied.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == original


async def test_redaction_strips_content_for_everyone(server, clients):
    alice = await clients.register("alice")
    bob = await clients.register("bob")
    room = await room_with(alice, bob)
    secret = await send(alice, room, "비밀번호는 1234")
    refused = await bob.room_redact(room, secret)
    assert refused.status_code == "M_FORBIDDEN", refused
    redacted = await alice.room_redact(room, secret, reason="실수")
    assert isinstance(redacted, RoomRedactResponse), redacted
    event = await bob.room_get_event(room, secret)
    assert isinstance(event.event, RedactedEvent), event.event
    assert event.event.source["content"] == {}
    assert event.event.source["unsigned"]["redacted_because"]["content"]["reason"] == "실수"
    history = await bob.room_messages(room, start="", limit=10)
    assert "비밀번호는 1234" not in bodies(history.chunk)


async def test_typing_receipts_and_unread_counts(server, clients):
    alice = await clients.register("alice")
    bob = await clients.register("bob")
    room = await room_with(alice, bob)
    await sync(bob)
    await alice.room_typing(room, True, 10_000)
    await sync_until(bob, lambda r: bob.rooms[room].typing_users == [alice.user_id])
    ids = [await send(alice, room, f"메시지 {i}") for i in range(3)]
    await sync_until(bob, lambda r: bob.rooms[room].unread_notifications == 3)
    assert bob.rooms[room].typing_users == [], "sending ends typing"

    # Bob reads up to the second message: one stays unread; alice sees bob's receipt.
    await sync(alice)
    await bob.room_read_markers(room, fully_read_event=ids[1], read_event=ids[1])
    await sync_until(bob, lambda r: bob.rooms[room].unread_notifications == 1)
    got = await sync_until(
        alice,
        lambda r: any(isinstance(e, ReceiptEvent) for e in r.rooms.join.get(room, None).ephemeral)
        if room in r.rooms.join else False,
    )
    receipts = [
        (rc.event_id, rc.user_id)
        for e in got.rooms.join[room].ephemeral if isinstance(e, ReceiptEvent)
        for rc in e.receipts
    ]
    assert (ids[1], bob.user_id) in receipts
    assert alice.rooms[room].read_receipts[bob.user_id].event_id == ids[1]
    # A private receipt clears the count but is not shown to alice.
    await bob.update_receipt_marker(room, ids[2], receipt_type=ReceiptType.read_private)
    await sync_until(bob, lambda r: bob.rooms[room].unread_notifications == 0)
    quiet = await sync(alice)
    if room in quiet.rooms.join:
        assert not any(
            rc.event_id == ids[2] for e in quiet.rooms.join[room].ephemeral if isinstance(e, ReceiptEvent)
            for rc in e.receipts
        )


async def test_scrolling_back_with_the_librarys_pagination(server, clients):
    alice = await clients.register("alice")
    room = await room_with(alice)
    for i in range(50):
        await send(alice, room, f"#{i}")
    start = (await sync(alice, sync_filter={"room": {"timeline": {"limit": 5}}})).rooms.join[room].timeline
    assert start.limited and bodies(start.events) == [f"#{i}" for i in range(45, 50)]
    token = start.prev_batch
    older: list[str] = []
    pages = 0
    while True:
        page = await alice.room_messages(room, start=token, limit=10)
        assert isinstance(page, RoomMessagesResponse), page
        pages += 1
        older = list(reversed(bodies(page.chunk))) + older
        if not page.chunk or page.end is None:
            break
        token = page.end
    assert [b for b in older if b.startswith("#")] == [f"#{i}" for i in range(45)]
    assert pages >= 5
    # And forwards again from the oldest point.
    forward = await alice.room_messages(room, start=page.start, limit=100, direction=MessageDirection.front)
    assert bodies(forward.chunk)[-50:] == [f"#{i}" for i in range(50)]

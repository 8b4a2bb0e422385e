"""Rooms as matrix-nio (and mautrix for account data) use them: direct messages, group rooms,
directory and aliases, profiles, power levels, leaving and forgetting."""

from mautrix.client import ClientAPI
from mautrix.types import EventType
from nio import (
    InviteMemberEvent,
    JoinedRoomsResponse,
    PowerLevelsEvent,
    RoomCreateResponse,
    RoomForgetResponse,
    RoomMemberEvent,
    RoomPreset,
    RoomPutStateError,
    RoomPutStateResponse,
    RoomResolveAliasResponse,
    RoomVisibility,
)

from matrix import bodies, sync, sync_until, timeline


async def create(client, **kwargs) -> str:
    response = await client.room_create(**kwargs)
    assert isinstance(response, RoomCreateResponse), response
    return response.room_id


async def test_a_direct_message_reaches_the_invitee(server, clients):
    alice = await clients.register("alice")
    bob = await clients.register("bob")
    await sync(bob)
    room = await create(
        alice, is_direct=True, invite=[bob.user_id], preset=RoomPreset.trusted_private_chat
    )
    # Element records DMs in m.direct account data; mautrix writes it as Element does.
    api = ClientAPI(mxid=alice.user_id, base_url=server.url, token=alice.access_token)
    direct = EventType.find("m.direct", EventType.Class.ACCOUNT_DATA)
    try:
        await api.set_account_data(direct, {bob.user_id: [room]})
        stored = await api.get_account_data(direct)
    finally:
        await api.api.session.close()
    assert dict(stored) == {bob.user_id: [room]}

    invited = await sync_until(bob, lambda r: room in r.rooms.invite)
    state = invited.rooms.invite[room].invite_state
    mine = [e for e in state if isinstance(e, InviteMemberEvent) and e.state_key == bob.user_id]
    assert mine and mine[0].content.get("is_direct") is True, state
    joined = await bob.join(room)
    assert getattr(joined, "room_id", None) == room, joined

    await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "점심 같이?"})
    got = await sync_until(bob, lambda r: "점심 같이?" in bodies(timeline(r, room)))
    assert got.rooms.join[room].summary.joined_member_count == 2
    assert bob.rooms[room].is_group is False or bob.rooms[room].member_count == 2


async def test_group_room_invites_joins_names_and_directory(server, clients):
    alice = await clients.register("alice")
    bob = await clients.register("bob")
    carol = await clients.register("carol")
    room = await create(
        alice,
        visibility=RoomVisibility.public,
        alias="devteam",
        name="개발팀",
        topic="daily standup",
        preset=RoomPreset.public_chat,
    )
    resolved = await carol.room_resolve_alias("#devteam:localhost")
    assert isinstance(resolved, RoomResolveAliasResponse) and resolved.room_id == room
    listed = await carol.list_public_rooms()
    assert listed.__class__.__name__ == "PublicRoomsResponse", listed
    entry = next(r for r in listed.public_rooms if r.room_id == room)
    assert (entry.name, entry.topic, entry.canonical_alias) == ("개발팀", "daily standup", "#devteam:localhost")
    assert entry.num_joined_members == 1
    searched = await carol.list_public_rooms(filter_generic_search_term="개발")
    assert [r.room_id for r in searched.public_rooms] == [room]
    assert (await carol.list_public_rooms(filter_generic_search_term="nothing")).public_rooms == []

    assert (await alice.room_invite(room, bob.user_id)).__class__.__name__ == "RoomInviteResponse"
    await sync_until(bob, lambda r: room in r.rooms.invite)
    await bob.join(room)
    await carol.join("#devteam:localhost")
    await sync_until(alice, lambda r: alice.rooms.get(room) is not None and len(alice.rooms[room].users) == 3)
    assert set(alice.rooms[room].users) == {alice.user_id, bob.user_id, carol.user_id}
    assert alice.rooms[room].name == "개발팀"

    # A profile change shows in the room as a member event with the new name.
    await bob.set_displayname("밥")
    await sync_until(
        carol,
        lambda r: any(
            isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.content.get("displayname") == "밥"
            for e in timeline(r, room)
        ),
    )
    assert carol.rooms[room].user_name(bob.user_id) == "밥"


async def test_power_levels_refuse_then_allow(server, clients):
    alice = await clients.register("alice")
    bob = await clients.register("bob")
    room = await create(alice, preset=RoomPreset.public_chat)
    await bob.join(room)
    await sync_until(bob, lambda r: room in r.rooms.join)

    refused = await bob.room_put_state(room, "m.room.name", {"name": "bob's room"})
    assert isinstance(refused, RoomPutStateError) and refused.status_code == "M_FORBIDDEN", refused

    await sync_until(alice, lambda r: room in alice.rooms and bob.user_id in alice.rooms[room].users)
    levels = alice.rooms[room].power_levels
    users = dict(levels.users)
    users[bob.user_id] = 50
    content = {
        "users": users,
        "users_default": levels.defaults.users_default,
        "events": dict(levels.events),
        "events_default": levels.defaults.events_default,
        "state_default": levels.defaults.state_default,
        "ban": levels.defaults.ban,
        "kick": levels.defaults.kick,
        "redact": levels.defaults.redact,
        "invite": levels.defaults.invite,
    }
    assert isinstance(await alice.room_put_state(room, "m.room.power_levels", content), RoomPutStateResponse)
    await sync_until(bob, lambda r: any(isinstance(e, PowerLevelsEvent) for e in timeline(r, room)))
    assert bob.rooms[room].power_levels.get_user_level(bob.user_id) == 50
    allowed = await bob.room_put_state(room, "m.room.name", {"name": "bob's room"})
    assert isinstance(allowed, RoomPutStateResponse), allowed
    # Bob still may not change the power levels (that needs 100).
    again = await bob.room_put_state(room, "m.room.power_levels", {**content, "users": {bob.user_id: 100}})
    assert isinstance(again, RoomPutStateError) and again.status_code == "M_FORBIDDEN"


async def test_leaving_and_forgetting(server, clients):
    alice = await clients.register("alice")
    bob = await clients.register("bob")
    room = await create(alice, preset=RoomPreset.public_chat, name="잠깐")
    await bob.join(room)
    await sync(bob)
    refused = await bob.room_forget(room)
    assert refused.status_code == "M_UNKNOWN", "joined rooms cannot be forgotten"
    await bob.room_leave(room)
    left = await sync_until(bob, lambda r: room in r.rooms.leave)
    leave_events = [e for e in left.rooms.leave[room].timeline.events if isinstance(e, RoomMemberEvent)]
    assert leave_events[-1].membership == "leave"
    assert isinstance(await bob.room_forget(room), RoomForgetResponse)
    joined = await bob.joined_rooms()
    assert isinstance(joined, JoinedRoomsResponse) and room not in joined.rooms
    # Forgotten rooms stay out of a fresh initial sync, even with include_leave.
    again = clients.new(bob.user_id, bob.device_id)
    again.access_token = bob.access_token
    fresh = await sync(again, sync_filter={"room": {"include_leave": True}})
    assert room not in fresh.rooms.leave and room not in fresh.rooms.join

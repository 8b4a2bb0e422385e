"""End-to-end encryption with matrix-nio's own Olm/Megolm (python-olm): Sori stores and routes
the keys and to-device messages; the clients encrypt and decrypt."""

import json
import urllib.request

from nio import AsyncClient, JoinResponse, MegolmEvent, RoomMessageText, RoomPreset, RoomSendResponse

from matrix import sync
from test_rooms import create


async def e2e_sync(client: AsyncClient):
    """One sync plus the key upkeep nio's sync_forever does after each."""
    response = await sync(client, timeout_ms=1000)
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    await client.send_to_device_messages()
    return response


async def decrypted(client: AsyncClient, room_id: str, body: str, rounds: int = 20) -> RoomMessageText:
    """Syncs until the client has decrypted a message with `body` in the room."""
    for _ in range(rounds):
        response = await e2e_sync(client)
        room = response.rooms.join.get(room_id)
        for event in room.timeline.events if room else []:
            if isinstance(event, MegolmEvent):
                # The key may have come after the message: try again with what we have now.
                event = client.decrypt_event(event)
            if isinstance(event, RoomMessageText) and event.body == body:
                return event
    raise AssertionError(f"{client.user_id} never decrypted {body!r}")


async def test_two_nio_clients_exchange_encrypted_messages(server, clients):
    alice = await clients.register("alice", encryption=True)
    bob = await clients.register("bob", encryption=True)
    for client in (alice, bob):
        await client.keys_upload()
        await e2e_sync(client)

    # Sori encrypts private rooms by default; nio sees m.room.encryption and encrypts.
    room = await create(
        alice, is_direct=True, invite=[bob.user_id], preset=RoomPreset.trusted_private_chat
    )
    await e2e_sync(bob)
    assert isinstance(await bob.join(room), JoinResponse)
    for _ in range(5):
        await e2e_sync(alice)
        if bob.user_id in alice.rooms[room].users:
            break
    assert alice.rooms[room].encrypted

    sent = await alice.room_send(
        room, "m.room.message", {"msgtype": "m.text", "body": "암호화된 안녕"},
        ignore_unverified_devices=True,
    )
    assert isinstance(sent, RoomSendResponse), sent
    message = await decrypted(bob, room, "암호화된 안녕")
    assert message.sender == alice.user_id
    assert message.decrypted

    sent = await bob.room_send(
        room, "m.room.message", {"msgtype": "m.text", "body": "reply, encrypted"},
        ignore_unverified_devices=True,
    )
    assert isinstance(sent, RoomSendResponse), sent
    await decrypted(alice, room, "reply, encrypted")

    # On the server the messages are ciphertext only (read raw: nio would decrypt them).
    request = urllib.request.Request(
        f"{server.url}/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50",
        headers={"Authorization": f"Bearer {alice.access_token}"},
    )
    with urllib.request.urlopen(request) as answer:
        chunk = json.load(answer)["chunk"]
    wire = [e for e in chunk if e["type"] == "m.room.encrypted"]
    assert len(wire) == 2
    assert [e["type"] for e in chunk if e["type"] == "m.room.message"] == []
    assert all(e["content"]["algorithm"] == "m.megolm.v1.aes-sha2" for e in wire)

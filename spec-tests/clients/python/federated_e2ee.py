"""An encrypted DM across servers with matrix-nio's own Olm/Megolm: alice on Sori, bob on
Synapse (or any other homeserver). Run by the federation spec-tests, which start both servers:

    python federated_e2ee.py <alice's homeserver URL> <bob's homeserver URL>

Exits 0 when each has decrypted the other's message."""

import asyncio
import shutil
import sys
import tempfile

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    MegolmEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)


async def e2e_sync(client: AsyncClient) -> SyncResponse:
    """One sync plus the key upkeep nio's sync_forever does after each."""
    response = await client.sync(timeout=1000)
    assert isinstance(response, SyncResponse), response
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    await client.send_to_device_messages()
    return response


async def decrypted(client: AsyncClient, room_id: str, body: str) -> RoomMessageText:
    for _ in range(60):
        response = await e2e_sync(client)
        room = response.rooms.join.get(room_id)
        for event in room.timeline.events if room else []:
            if isinstance(event, MegolmEvent):
                event = client.decrypt_event(event)
            if isinstance(event, RoomMessageText) and event.body == body:
                return event
    raise AssertionError(f"{client.user_id} never decrypted {body!r}")


async def main(alice_url: str, bob_url: str) -> None:
    stores = [tempfile.mkdtemp(prefix="nio-store-") for _ in range(2)]
    config = AsyncClientConfig(store_sync_tokens=False, encryption_enabled=True)
    alice = AsyncClient(alice_url, "", store_path=stores[0], config=config)
    bob = AsyncClient(bob_url, "", store_path=stores[1], config=config)
    try:
        for client, name in ((alice, "alice"), (bob, "bob")):
            response = await client.register(name, f"{name}-e2ee-password-1", "nio")
            assert isinstance(response, RegisterResponse), response
            await client.keys_upload()
            await e2e_sync(client)

        # Sori encrypts private rooms by default; nio sees m.room.encryption and encrypts.
        created = await alice.room_create(
            is_direct=True, invite=[bob.user_id], preset=RoomPreset.trusted_private_chat
        )
        assert isinstance(created, RoomCreateResponse), created
        room = created.room_id
        for _ in range(30):
            await e2e_sync(bob)
            if room in bob.invited_rooms:
                break
        joined = await bob.join(room)
        assert isinstance(joined, JoinResponse), joined
        for _ in range(30):
            await e2e_sync(alice)
            if bob.user_id in alice.rooms[room].users:
                break
        assert alice.rooms[room].encrypted

        sent = await alice.room_send(
            room, "m.room.message", {"msgtype": "m.text", "body": "서버를 넘어 암호화"},
            ignore_unverified_devices=True,
        )
        assert isinstance(sent, RoomSendResponse), sent
        message = await decrypted(bob, room, "서버를 넘어 암호화")
        assert message.sender == alice.user_id and message.decrypted

        await e2e_sync(bob)
        sent = await bob.room_send(
            room, "m.room.message", {"msgtype": "m.text", "body": "encrypted back"},
            ignore_unverified_devices=True,
        )
        assert isinstance(sent, RoomSendResponse), sent
        message = await decrypted(alice, room, "encrypted back")
        assert message.sender == bob.user_id and message.decrypted
        print("decrypted both ways")
    finally:
        await asyncio.gather(alice.close(), bob.close())
        for store in stores:
            shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

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
    RegisterResponse,
    RoomCreateResponse,
    RoomPreset,
    RoomSendResponse,
)

# The same sync-and-key-upkeep and decryption loop as the single-server E2EE test.
from test_e2ee import decrypted, e2e_sync


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
        message = await decrypted(bob, room, "서버를 넘어 암호화", rounds=60)
        assert message.sender == alice.user_id and message.decrypted

        await e2e_sync(bob)
        sent = await bob.room_send(
            room, "m.room.message", {"msgtype": "m.text", "body": "encrypted back"},
            ignore_unverified_devices=True,
        )
        assert isinstance(sent, RoomSendResponse), sent
        message = await decrypted(alice, room, "encrypted back", rounds=60)
        assert message.sender == bob.user_id and message.decrypted
        print("decrypted both ways")
    finally:
        await asyncio.gather(alice.close(), bob.close())
        for store in stores:
            shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

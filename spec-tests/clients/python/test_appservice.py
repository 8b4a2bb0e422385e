"""mautrix-python's appservice module as a second bridge against Sori: Sori delivers the
events of the bridge's users' rooms to it, and the bridge registers a user, joins, sends and
pings through the appservice API."""

import asyncio
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
from mautrix.appservice import AppService
from mautrix.types import EventType
from nio import AsyncClient, RoomCreateResponse, RoomMessageText

from conftest import Server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


AS_TOKEN = "mx-as-token"
HS_TOKEN = "mx-hs-token"


@pytest.fixture
def bridged():
    port = _free_port()
    directory = Path(tempfile.mkdtemp(prefix="mx-registration-"))
    registration = directory / "mx.yaml"
    registration.write_text(
        "id: mx\n"
        f'url: "http://127.0.0.1:{port}"\n'
        f"as_token: {AS_TOKEN}\n"
        f"hs_token: {HS_TOKEN}\n"
        "sender_localpart: mx_bot\n"
        "rate_limited: false\n"
        "namespaces:\n"
        "  users:\n"
        "    - exclusive: true\n"
        '      regex: "@mx_.*:localhost"\n'
        "  aliases: []\n"
        "  rooms: []\n"
    )
    server = Server(f'[appservices]\nregistration_files = ["{registration}"]\n')
    yield server, port
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


async def wait_for(predicate, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_mautrix_bridge_hears_and_speaks(bridged):
    server, port = bridged
    appservice = AppService(
        server=server.url,
        domain="localhost",
        as_token=AS_TOKEN,
        hs_token=HS_TOKEN,
        bot_localpart="mx_bot",
        id="mx",
    )
    heard = []

    async def on_event(event):
        heard.append(event)

    appservice.matrix_event_handler(on_event)
    await appservice.start(host="127.0.0.1", port=port)
    alice = AsyncClient(server.url)
    try:
        await alice.register("alice", "alice-password-1")
        created = await alice.room_create(name="Bridged")
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id

        kim = appservice.intent.user("@mx_kim:localhost")
        await kim.ensure_registered()
        await alice.room_invite(room_id, "@mx_kim:localhost")
        await kim.join_room(room_id)
        await kim.send_text(room_id, "hello from the bridge")

        await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bridge"}
        )
        await wait_for(
            lambda: any(
                e.type == EventType.ROOM_MESSAGE and e.content.body == "hello bridge"
                for e in heard
            )
        )
        # The invite of its user reached it too, before the message.
        kinds = [(e.type, getattr(e, "state_key", None)) for e in heard]
        assert (EventType.ROOM_MEMBER, "@mx_kim:localhost") in kinds

        synced = await alice.sync(timeout=0)
        texts = [
            e.body
            for e in synced.rooms.join[room_id].timeline.events
            if isinstance(e, RoomMessageText)
        ]
        assert "hello from the bridge" in texts

        # The bridge checks that Sori reaches it.
        pong = await appservice.intent.api.request(
            "POST", "/_matrix/client/v1/appservice/mx/ping", {"transaction_id": "mx-ping"}
        )
        assert isinstance(pong["duration_ms"], int)
    finally:
        await alice.close()
        await appservice.stop()

"""synadm, the admin CLI Synapse admins use, driven against Sori unchanged: it must exit 0
and print what Synapse would for the server version, users (list, details, modify, password,
membership, deactivate), rooms (list, details, members, state, delete and its status) and
registration tokens."""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from nio import AsyncClient, LoginError, LoginResponse, RoomCreateResponse

from conftest import Server

SYNADM = str(Path(sys.executable).parent / "synadm")


class Synadm:
    """Runs synadm with a config file of its own (and a HOME of its own for its debug log)."""

    def __init__(self, server: Server, token: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="synadm-", dir=server.dir))
        self.config = self.home / "synadm.yaml"
        self.config.write_text(
            "user: boss\n"
            f"token: {token}\n"
            f"base_url: {server.url}\n"
            "admin_path: /_synapse/admin\n"
            "matrix_path: /_matrix\n"
            "timeout: 10\n"
            "format: json\n"
            "homeserver: localhost\n"
            "ssl_verify: false\n"
        )

    def run(self, *args: str, errors_expected: bool = False) -> str:
        done = subprocess.run(
            [SYNADM, "-c", str(self.config), "--batch", "-o", "json", *args],
            capture_output=True,
            text=True,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
            timeout=60,
        )
        assert done.returncode == 0, f"synadm {args}: {done.stdout}\n{done.stderr}"
        assert errors_expected or "errcode" not in done.stdout, f"synadm {args}: {done.stdout}"
        return done.stdout

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args))


def documents(text: str) -> list:
    """The JSON objects in synadm's output, which mixes several of them with text lines."""
    decoder = json.JSONDecoder()
    found, at = [], 0
    while (start := text.find("{", at)) != -1:
        try:
            value, at = decoder.raw_decode(text, start)
            found.append(value)
        except json.JSONDecodeError:
            at = start + 1
    return found


@pytest.fixture
def admin_server():
    server = Server()
    made = server.run_offline("user", "create", "boss", "--admin", "--password", "boss-password-1")
    assert made.returncode == 0, made.stderr
    yield server
    server.stop()


async def login(server: Server, user: str, password: str) -> AsyncClient:
    client = AsyncClient(server.url, user)
    response = await client.login(password)
    assert isinstance(response, LoginResponse), response
    return client


async def test_synadm_manages_users_rooms_and_tokens(admin_server):
    server = admin_server
    boss = await login(server, "boss", "boss-password-1")
    alice = AsyncClient(server.url)
    bob = AsyncClient(server.url)
    try:
        await alice.register("alice", "alice-password-1")
        await bob.register("bob", "bob-password-1")
        synadm = Synadm(server, boss.access_token)

        assert synadm.json("version")["server_version"].startswith("Sori ")

        listed = synadm.json("user", "list")
        # With the admin room's bot, which is marked as one.
        assert listed["total"] == 4
        assert {u["name"] for u in listed["users"]} == {
            "@boss:localhost",
            "@alice:localhost",
            "@bob:localhost",
            "@sori:localhost",
        }
        assert [u["user_type"] for u in listed["users"] if u["name"] == "@sori:localhost"] == [
            "bot"
        ]
        admins = synadm.json("user", "list", "-a")
        assert [u["name"] for u in admins["users"]] == ["@boss:localhost"]

        details = synadm.json("user", "details", "alice")
        assert details["name"] == "@alice:localhost"
        assert details["admin"] is False and details["deactivated"] is False

        # Modify (display name and the admin flag), then a new password.
        out = synadm.run("user", "modify", "alice", "-n", "Alice Kim", "-a")
        assert "Alice Kim" in out
        details = synadm.json("user", "details", "alice")
        assert details["displayname"] == "Alice Kim" and details["admin"] is True
        synadm.run("user", "password", "alice", "-p", "alice-new-password")
        relogin = AsyncClient(server.url, "alice")
        try:
            assert isinstance(await relogin.login("alice-password-1"), LoginError)
            assert isinstance(await relogin.login("alice-new-password"), LoginResponse)
        finally:
            await relogin.close()
        # A user created through modify (which first shows that the user does not exist).
        out = synadm.run(
            "user", "modify", "carol", "-P", "carol-password-1", "-n", "Carol",
            errors_expected=True,
        )
        assert "@carol:localhost" in out
        await (await login(server, "carol", "carol-password-1")).close()

        # Rooms: list, details, members, state, membership (with aliases).
        created = await bob.room_create(name="Planning", alias="planning")
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        rooms = synadm.json("room", "list")
        # With the admin room.
        assert rooms["total_rooms"] == 2
        assert room_id in [r["room_id"] for r in rooms["rooms"]]
        room = synadm.json("room", "details", room_id)
        assert room["name"] == "Planning"
        assert room["canonical_alias"] == "#planning:localhost"
        assert room["joined_members"] == 1
        members = synadm.json("room", "members", room_id)
        assert members == {"members": ["@bob:localhost"], "total": 1}
        state = synadm.json("room", "state", room_id)
        assert any(e["type"] == "m.room.create" for e in state["state"])
        membership = synadm.run("user", "membership", "bob")
        assert json.loads(membership)["joined_rooms"] == ["#planning:localhost"]

        # Delete the room (v2, purged), then ask for its status until it is done.
        out = synadm.run("room", "delete", room_id)
        delete_id = next(d["delete_id"] for d in documents(out) if "delete_id" in d)
        for _ in range(100):
            status = synadm.json("room", "delete-status", "-d", delete_id)
            if status["status"] in ("complete", "failed"):
                break
            time.sleep(0.05)
        assert status["status"] == "complete", status
        assert status["shutdown_room"]["kicked_users"] == ["@bob:localhost"]
        remaining = synadm.json("room", "list")["rooms"]
        assert [r["name"] for r in remaining] == ["Sori admins"]

        # Registration tokens.
        token = synadm.json("regtok", "new", "-n", "welcome", "-u", "2")
        assert token == {
            "token": "welcome",
            "uses_allowed": 2,
            "pending": 0,
            "completed": 0,
            "expiry_time": None,
        }
        listed = synadm.run("regtok", "list")
        assert "welcome" in listed
        done = subprocess.run(
            [SYNADM, "-c", str(synadm.config), "--batch", "regtok", "delete", "welcome"],
            capture_output=True,
            text=True,
            env={"HOME": str(synadm.home), "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0 and "successfully deleted" in done.stdout, done

        # Deactivation locks bob out.
        synadm.run("user", "deactivate", "bob")
        assert synadm.json("user", "details", "bob")["deactivated"] is True
        again = AsyncClient(server.url, "bob")
        try:
            refused = await again.login("bob-password-1")
            assert isinstance(refused, LoginError) and refused.status_code == "M_USER_DEACTIVATED"
        finally:
            await again.close()
    finally:
        await boss.close()
        await alice.close()
        await bob.close()


async def test_synadm_as_a_plain_user_changes_nothing(admin_server):
    server = admin_server
    mallory = AsyncClient(server.url)
    try:
        await mallory.register("mallory", "mallory-password-1")
        synadm = Synadm(server, mallory.access_token)
        done = subprocess.run(
            [SYNADM, "-c", str(synadm.config), "--batch", "-o", "json", "user", "modify",
             "mallory", "-a"],
            capture_output=True,
            text=True,
            env={"HOME": str(synadm.home), "PATH": "/usr/bin:/bin"},
        )
        assert "M_FORBIDDEN" in done.stdout, done
    finally:
        await mallory.close()
    boss = await login(server, "boss", "boss-password-1")
    try:
        admin = Synadm(server, boss.access_token)
        assert admin.json("user", "details", "mallory")["admin"] is False
    finally:
        await boss.close()

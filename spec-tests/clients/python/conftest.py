"""Starts a fresh Sori for each test and hands out clients of real Matrix libraries.

The server binary comes from $TESTED_SORI_BINARY (scripts/test sets it to the freshly built
one); `SORI_*` variables are not passed on, since they would configure the server.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from nio import AsyncClient, AsyncClientConfig, RegisterResponse


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary() -> str:
    if "TESTED_SORI_BINARY" in os.environ:
        return os.environ["TESTED_SORI_BINARY"]
    # The same default as scripts/test and scripts/run.
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "sori-target"))
    return str(Path(target) / "debug" / "sori")


def password(name: str) -> str:
    return f"{name}-correct-horse"


class Server:
    def __init__(self, extra_toml: str = "") -> None:
        self.dir = tempfile.mkdtemp(prefix="sori-clients-")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = Path(self.dir) / "sori.toml"
        config.write_text(
            'server_name = "localhost"\n'
            f'[listen]\nclient = "127.0.0.1:{self.port}"\n'
            f'[storage]\npath = "{self.dir}/data"\ncache_mb = 8\n'
            "[registration]\nenabled = true\n"
            "[rate_limits]\n"
            "login = { per_second = 1000.0, burst = 1000 }\n"
            "registration = { per_second = 1000.0, burst = 1000 }\n"
            '[log]\nformat = "json"\nlevel = "info"\n' + extra_toml
        )
        self.log = open(Path(self.dir) / "sori.log", "w")
        self._spawn()

    def _spawn(self) -> None:
        config = Path(self.dir) / "sori.toml"
        self.process = subprocess.Popen(
            [_binary(), "--config", str(config), "serve"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("SORI_")},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=1)
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sori did not start: {self.logs()}")
                time.sleep(0.05)

    def run_offline(self, *args: str) -> subprocess.CompletedProcess:
        """Stops the server, runs `sori --config <its config> ARGS` on its data (as an operator
        would with the server down), and starts it again."""
        self.process.kill()
        self.process.wait()
        done = subprocess.run(
            [_binary(), "--config", str(Path(self.dir) / "sori.toml"), *args],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("SORI_")},
        )
        self._spawn()
        return done

    def logs(self) -> str:
        return (Path(self.dir) / "sori.log").read_text()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server():
    server = Server()
    yield server
    server.stop()


class Clients:
    """Registers users and keeps their nio clients, closed at the end of the test."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.clients: list[AsyncClient] = []
        self.stores: list[str] = []

    def new(
        self, user: str = "", device_id: str | None = None, encryption: bool = False
    ) -> AsyncClient:
        """A client; with `encryption`, nio's Olm/Megolm machinery and a store of its own."""
        store = tempfile.mkdtemp(prefix="nio-store-") if encryption else None
        if store:
            self.stores.append(store)
        client = AsyncClient(
            self.server.url,
            user,
            device_id=device_id,
            store_path=store,
            config=AsyncClientConfig(store_sync_tokens=False, encryption_enabled=encryption),
        )
        self.clients.append(client)
        return client

    async def register(self, name: str, encryption: bool = False) -> AsyncClient:
        client = self.new(encryption=encryption)
        response = await client.register(name, password(name), "pytest")
        assert isinstance(response, RegisterResponse), response
        return client

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients))
        for store in self.stores:
            shutil.rmtree(store, ignore_errors=True)


@pytest.fixture
async def clients(server):
    clients = Clients(server)
    yield clients
    await clients.close()

"""Signing in through the company directory as matrix-nio does it: the password form with an
employee number, then user-interactive auth (deleting a device) with the directory password."""

import pytest
from nio import (
    AsyncClient,
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    LoginError,
    LoginResponse,
    ProfileGetDisplayNameResponse,
)

from conftest import Server
from directory import PERSON, Slapd


@pytest.fixture
def directory_server():
    slapd = Slapd()
    server = Server(slapd.ldap_toml())
    yield server
    server.stop()
    slapd.stop()


async def test_a_directory_person_signs_in_with_nio(directory_server):
    uid, number, name, password = PERSON
    phone = AsyncClient(directory_server.url, number)
    laptop = AsyncClient(directory_server.url, uid)
    try:
        wrong = await phone.login("not-the-password", device_name="phone")
        assert isinstance(wrong, LoginError) and wrong.status_code == "M_FORBIDDEN", wrong

        login = await phone.login(password, device_name="phone")
        assert isinstance(login, LoginResponse), login
        assert login.user_id == "@minsu:localhost"
        display = await phone.get_displayname()
        assert isinstance(display, ProfileGetDisplayNameResponse), display
        assert display.displayname == name

        second = await laptop.login(password, device_name="laptop")
        assert isinstance(second, LoginResponse), second
        assert second.user_id == login.user_id

        # Deleting the phone asks for the password again: the directory's.
        challenge = await laptop.delete_devices([phone.device_id])
        assert isinstance(challenge, DeleteDevicesAuthResponse), challenge
        auth = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": uid},
            "password": password,
            "session": challenge.session,
        }
        deleted = await laptop.delete_devices([phone.device_id], auth)
        assert isinstance(deleted, DeleteDevicesResponse), deleted
    finally:
        await phone.close()
        await laptop.close()

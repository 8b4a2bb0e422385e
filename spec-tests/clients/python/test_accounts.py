"""Accounts and devices as matrix-nio drives them: register, log in on a second device,
rename and delete devices (with user-interactive auth), log out."""

from nio import (
    AsyncClient,
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    DevicesResponse,
    LoginResponse,
    LogoutResponse,
    UpdateDeviceResponse,
    WhoamiError,
    WhoamiResponse,
)

from conftest import password


async def test_register_login_devices_and_logout(server, clients):
    alice = await clients.register("alice")
    assert alice.user_id == "@alice:localhost"
    me = await alice.whoami()
    assert isinstance(me, WhoamiResponse) and me.user_id == alice.user_id
    assert me.device_id == alice.device_id

    # A second device logs in with the password.
    laptop = clients.new("@alice:localhost")
    login = await laptop.login(password("alice"), device_name="laptop")
    assert isinstance(login, LoginResponse), login
    assert laptop.device_id != alice.device_id

    devices = await alice.devices()
    assert isinstance(devices, DevicesResponse), devices
    names = {d.id: d.display_name for d in devices.devices}
    assert names == {alice.device_id: "pytest", laptop.device_id: "laptop"}

    renamed = await alice.update_device(laptop.device_id, {"display_name": "회사 노트북"})
    assert isinstance(renamed, UpdateDeviceResponse), renamed
    devices = await laptop.devices()
    assert {d.display_name for d in devices.devices} == {"pytest", "회사 노트북"}

    # Deleting a device needs the password: first a 401 with the flows, then the auth.
    challenge = await alice.delete_devices([laptop.device_id])
    assert isinstance(challenge, DeleteDevicesAuthResponse), challenge
    assert {"stages": ["m.login.password"]} in challenge.flows
    deleted = await alice.delete_devices(
        [laptop.device_id],
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": password("alice"),
            "session": challenge.session,
        },
    )
    assert isinstance(deleted, DeleteDevicesResponse), deleted
    gone = await laptop.whoami()
    assert isinstance(gone, WhoamiError) and gone.status_code == "M_UNKNOWN_TOKEN"

    # A wrong password does not log in.
    intruder = clients.new("@alice:localhost")
    refused = await intruder.login("not-the-password")
    assert not isinstance(refused, LogoutResponse | LoginResponse)
    assert refused.status_code == "M_FORBIDDEN"

    out = await alice.logout()
    assert isinstance(out, LogoutResponse), out
    after = await alice.whoami()
    assert isinstance(after, WhoamiError) and after.status_code == "M_UNKNOWN_TOKEN"


async def test_usernames_are_unique_and_checked(server, clients):
    await clients.register("bob")
    again = clients.new()
    taken = await again.register("bob", password("bob"))
    assert taken.status_code == "M_USER_IN_USE", taken
    invalid = clients.new()
    bad = await invalid.register("Bob Smith!", password("x"))
    assert bad.status_code == "M_INVALID_USERNAME", bad
    assert isinstance(invalid, AsyncClient)

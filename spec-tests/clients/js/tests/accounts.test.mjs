import assert from "node:assert/strict";
import { test } from "node:test";

import { password, sdk, startServer } from "../harness.mjs";

test("register, log in on a second device, rename it, log out", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const alice = await server.register("alice");
  assert.equal((await alice.whoami()).user_id, "@alice:localhost");

  const anonymous = sdk.createClient({ baseUrl: server.url });
  const login = await anonymous.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: "alice" },
    password: password("alice"),
    initial_device_display_name: "laptop",
  });
  const laptop = server.client(login);
  assert.notEqual(login.device_id, alice.getDeviceId());

  const { devices } = await alice.getDevices();
  assert.deepEqual(
    Object.fromEntries(devices.map((d) => [d.device_id, d.display_name])),
    { [alice.getDeviceId()]: "node", [login.device_id]: "laptop" },
  );
  await alice.setDeviceDetails(login.device_id, { display_name: "회사 노트북" });
  assert.equal((await laptop.getDevice(login.device_id)).display_name, "회사 노트북");

  await assert.rejects(
    anonymous.loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: "alice" },
      password: "wrong",
    }),
    (e) => e.errcode === "M_FORBIDDEN" && e.httpStatus === 403,
  );

  await laptop.logout(true);
  await assert.rejects(laptop.whoami(), (e) => e.errcode === "M_UNKNOWN_TOKEN" && e.httpStatus === 401);
  assert.equal((await alice.whoami()).device_id, alice.getDeviceId(), "the other device stays");
});

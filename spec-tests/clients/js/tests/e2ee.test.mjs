// End-to-end encryption through matrix-js-sdk's Rust crypto (matrix-sdk-crypto-wasm): the
// clients do the cryptography, Sori only stores and routes keys and to-device messages.
import assert from "node:assert/strict";
import { test } from "node:test";

import { LoggerLevel, Tracing } from "@matrix-org/matrix-sdk-crypto-wasm";

import { password, sdk, startServer, startSyncing, until } from "../harness.mjs";

const { EventType, Preset } = sdk;

/** A client with Rust crypto (in memory), syncing. */
async function encrypting(client) {
  await client.initRustCrypto({ useIndexedDB: false });
  // The SDK turns the crypto library's debug tracing on; warnings and errors are enough.
  new Tracing(LoggerLevel.Warn).turnOn();
  await startSyncing(client);
  return client;
}

/** Logs the user in on a new device and returns its client (with crypto, syncing). */
async function newDevice(server, name) {
  const anonymous = sdk.createClient({ baseUrl: server.url });
  const login = await anonymous.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: name },
    password: password(name),
  });
  return encrypting(server.client(login));
}

/** The decrypted body of the room's message with `body`, once the client has decrypted it. */
function decrypted(client, roomId, body) {
  return until(() => {
    const room = client.getRoom(roomId);
    const event = room
      ?.getLiveTimeline()
      .getEvents()
      .find((e) => e.getWireType() === EventType.RoomMessageEncrypted && e.getContent().body === body);
    return event && !event.isDecryptionFailure() ? event : null;
  }, `"${body}" decrypted by ${client.getUserId()}/${client.getDeviceId()}`, 30);
}

test("two users exchange encrypted messages; a new device gets keys; a backup restores them", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const alice = await encrypting(await server.register("alice"));
  const bob = await encrypting(await server.register("bob"));

  // A DM: Sori turns encryption on for private rooms by default.
  const { room_id: roomId } = await alice.createRoom({
    preset: Preset.TrustedPrivateChat,
    is_direct: true,
    invite: [bob.getUserId()],
  });
  await until(() => bob.getRoom(roomId), "bob's invite");
  await bob.joinRoom(roomId);
  await until(() => alice.getRoom(roomId)?.getJoinedMemberCount() === 2, "bob joined");
  assert.ok(await alice.getCrypto().isEncryptionEnabledInRoom(roomId));

  await alice.sendTextMessage(roomId, "안녕, 밥");
  const atBob = await decrypted(bob, roomId, "안녕, 밥");
  assert.equal(atBob.getSender(), alice.getUserId());
  await bob.sendTextMessage(roomId, "hi alice");
  await decrypted(alice, roomId, "hi alice");

  // The server only ever saw ciphertext.
  const page = await alice.createMessagesRequest(roomId, null, 50, "b");
  const wire = page.chunk.filter((e) => e.type === EventType.RoomMessageEncrypted);
  assert.equal(wire.length, 2);
  for (const event of wire) assert.equal(event.content.body, undefined);

  // Alice signs in on a laptop: what is sent after that reaches it too.
  const laptop = await newDevice(server, "alice");
  // Both clients learn of the laptop from `device_lists.changed` in their syncs; a message
  // sent before the sender has fetched the new device list would not be shared with it.
  for (const client of [alice, bob]) {
    await until(async () => {
      const devices = await client.getCrypto().getUserDeviceInfo([alice.getUserId()]);
      return devices.get(alice.getUserId())?.has(laptop.getDeviceId());
    }, `${client.getUserId()} knows alice's laptop`);
  }
  await bob.sendTextMessage(roomId, "for both of your devices");
  await decrypted(laptop, roomId, "for both of your devices");
  await decrypted(alice, roomId, "for both of your devices");

  // Key backup: alice backs up her room keys; a fresh device restores them with the backup
  // key and reads the history it was never sent keys for.
  const crypto = alice.getCrypto();
  await crypto.resetKeyBackup();
  // The SDK turns the new backup on in the background.
  const version = await until(() => crypto.getActiveSessionBackupVersion(), "an active backup version");
  await until(async () => {
    const response = await fetch(`${server.url}/_matrix/client/v3/room_keys/version/${version}`, {
      headers: { authorization: `Bearer ${alice.getAccessToken()}` },
    });
    return (await response.json()).count >= 2;
  }, "the room keys in the backup", 30);
  const backupKey = await crypto.getSessionBackupPrivateKey();

  const fresh = await newDevice(server, "alice");
  const freshCrypto = fresh.getCrypto();
  await freshCrypto.storeSessionBackupPrivateKey(backupKey, version);
  const restored = await freshCrypto.restoreKeyBackup();
  assert.ok(restored.imported >= 2, `imported ${restored.imported} of ${restored.total}`);
  const room = await until(() => fresh.getRoom(roomId), "the room on the fresh device");
  while (!room.getLiveTimeline().getEvents().some((e) => e.getContent().body === "안녕, 밥")) {
    const before = room.getLiveTimeline().getEvents().length;
    await fresh.scrollback(room, 50);
    if (room.getLiveTimeline().getEvents().length === before) break;
  }
  await decrypted(fresh, roomId, "안녕, 밥");
  await decrypted(fresh, roomId, "hi alice");
});

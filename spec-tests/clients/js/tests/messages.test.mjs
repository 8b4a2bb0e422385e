// Messages through matrix-js-sdk's own sync loop and builders.
import assert from "node:assert/strict";
import { test } from "node:test";

import { sdk, startServer, startSyncing, until } from "../harness.mjs";

const { EventType, RelationType, RoomEvent, NotificationCountType, Preset, THREAD_RELATION_TYPE } = sdk;

async function room(server, names, options = {}) {
  const users = await Promise.all(names.map((n) => server.register(n)));
  const { room_id } = await users[0].createRoom({ preset: Preset.PublicChat, ...options });
  for (const user of users.slice(1)) await user.joinRoom(room_id);
  return { users, roomId: room_id };
}

const bodiesOf = (room) =>
  room
    .getLiveTimeline()
    .getEvents()
    .filter((e) => e.getType() === EventType.RoomMessage)
    .map((e) => e.getContent().body);

test("two hundred interleaved messages reach a third client once, in order, across a reconnect", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const {
    users: [alice, bob, carol],
    roomId,
  } = await room(server, ["alice", "bob", "carol"]);
  await startSyncing(carol);
  const received = [];
  carol.on(RoomEvent.Timeline, (event, r, toStartOfTimeline) => {
    if (r?.roomId === roomId && !toStartOfTimeline && event.getType() === EventType.RoomMessage) {
      received.push(event.getId());
    }
  });
  const sendAll = async (client, name) => {
    for (let i = 0; i < 100; i++) await client.sendTextMessage(roomId, `${name}-${i}`);
  };
  const sending = Promise.all([sendAll(alice, "a"), sendAll(bob, "b")]);
  // Carol drops her connection half-way and comes back with her last sync token.
  await until(() => received.length >= 60, "the first messages");
  carol.stopClient();
  await new Promise((r) => setTimeout(r, 200));
  await carol.startClient({ initialSyncLimit: 20 });
  await sending;
  const carolRoom = carol.getRoom(roomId);
  await until(() => {
    const bodies = bodiesOf(carolRoom);
    return bodies.includes("a-99") && bodies.includes("b-99");
  }, "the last messages");

  // Scroll back until carol's timeline holds every message, then compare with the server.
  while (bodiesOf(carolRoom).filter((b) => /^[ab]-/.test(b)).length < 200) {
    const before = carolRoom.getLiveTimeline().getEvents().length;
    await carol.scrollback(carolRoom, 50);
    if (carolRoom.getLiveTimeline().getEvents().length === before) break;
  }
  const seen = bodiesOf(carolRoom).filter((b) => /^[ab]-/.test(b));
  assert.equal(seen.length, 200, `every message once; got ${seen.length}: ${seen.slice(0, 5)}…${seen.slice(-5)}`);
  assert.equal(new Set(seen).size, 200);
  for (const name of ["a", "b"]) {
    assert.deepEqual(
      seen.filter((b) => b.startsWith(`${name}-`)),
      Array.from({ length: 100 }, (_, i) => `${name}-${i}`),
      `${name}'s messages in the order sent`,
    );
  }
  const ids = carolRoom.getLiveTimeline().getEvents().map((e) => e.getId());
  assert.equal(new Set(ids).size, ids.length, "no event twice in the timeline");
  const page = await alice.createMessagesRequest(roomId, null, 300, "b");
  const serverOrder = page.chunk
    .filter((e) => e.type === EventType.RoomMessage)
    .map((e) => e.content.body)
    .reverse();
  assert.deepEqual(seen, serverOrder, "carol's order is the server's order");
});

test("edits, replies, threads and reactions as the SDK builds them", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const {
    users: [alice, bob],
    roomId,
  } = await room(server, ["alice", "bob"]);
  await startSyncing(alice, { threadSupport: true });
  await startSyncing(bob, { threadSupport: true });
  const { event_id: root } = await alice.sendTextMessage(roomId, "회의 3시");
  await alice.sendMessage(roomId, {
    msgtype: "m.text",
    body: "* 회의 4시",
    "m.new_content": { msgtype: "m.text", body: "회의 4시" },
    "m.relates_to": { rel_type: RelationType.Replace, event_id: root },
  });
  const bobRoom = bob.getRoom(roomId) ?? (await until(() => bob.getRoom(roomId), "bob's room"));
  const original = await until(() => bobRoom.findEventById(root), "the original message");
  await until(() => original.replacingEvent(), "the edit applied");
  assert.equal(original.getContent().body, "회의 4시");

  await bob.sendMessage(roomId, root, { msgtype: "m.text", body: "스레드에서" });
  await bob.sendMessage(roomId, root, { msgtype: "m.text", body: "또" });
  const aliceRoom = alice.getRoom(roomId);
  const thread = await until(() => aliceRoom.getThread(root), "the thread");
  await until(() => thread.length === 2, "two thread replies");
  assert.deepEqual(
    thread.events.filter((e) => e.getId() !== root).map((e) => e.getContent().body),
    ["스레드에서", "또"],
  );

  const quote = aliceRoom.findEventById(root);
  await bob.sendMessage(roomId, {
    msgtype: "m.text",
    body: "> 회의 4시\n\n알겠어요",
    "m.relates_to": { "m.in_reply_to": { event_id: quote.getId() } },
  });
  await until(
    () => aliceRoom.getLiveTimeline().getEvents().find((e) => e.replyEventId === root),
    "the reply",
  );

  const reaction = { "m.relates_to": { rel_type: RelationType.Annotation, event_id: root, key: "👍" } };
  await bob.sendEvent(roomId, EventType.Reaction, reaction);
  await alice.sendEvent(roomId, EventType.Reaction, reaction);
  await assert.rejects(bob.sendEvent(roomId, EventType.Reaction, reaction), (e) => e.errcode === "M_DUPLICATE_ANNOTATION");
  const annotations = await until(() => {
    const relations = aliceRoom.relations.getChildEventsForEvent(root, RelationType.Annotation, EventType.Reaction);
    const byKey = relations?.getSortedAnnotationsByKey();
    return byKey?.[0]?.[1]?.size === 2 ? byKey : null;
  }, "two 👍");
  assert.equal(annotations[0][0], "👍");
  assert.ok(THREAD_RELATION_TYPE.name === "m.thread");
});

test("redaction, typing, receipts and unread counts", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const {
    users: [alice, bob],
    roomId,
  } = await room(server, ["alice", "bob"]);
  await startSyncing(alice);
  await startSyncing(bob);
  const bobRoom = await until(() => bob.getRoom(roomId), "bob's room");
  const aliceRoom = await until(() => alice.getRoom(roomId), "alice's room");

  await alice.sendTyping(roomId, true, 10_000);
  await until(() => bobRoom.getMember(alice.getUserId())?.typing, "alice typing");

  const ids = [];
  for (const body of ["하나", "둘", "비밀번호는 1234"]) ids.push((await alice.sendTextMessage(roomId, body)).event_id);
  await until(() => bobRoom.getUnreadNotificationCount(NotificationCountType.Total) === 3, "three unread");
  assert.equal(bobRoom.getMember(alice.getUserId()).typing, false, "sending ends typing");

  await assert.rejects(bob.redactEvent(roomId, ids[2]), (e) => e.errcode === "M_FORBIDDEN");
  await alice.redactEvent(roomId, ids[2], undefined, { reason: "실수" });
  const secret = await until(() => {
    const e = bobRoom.findEventById(ids[2]);
    return e?.isRedacted() ? e : null;
  }, "the redaction");
  assert.deepEqual(secret.getContent(), {});

  // Bob reads the second message: alice sees his receipt; his count drops.
  await bob.sendReadReceipt(bobRoom.findEventById(ids[1]));
  await until(() => aliceRoom.getEventReadUpTo(bob.getUserId()) === ids[1], "bob's receipt at alice");
  await until(() => bobRoom.getUnreadNotificationCount(NotificationCountType.Total) <= 1, "count after reading");
  await bob.setRoomReadMarkers(roomId, ids[2], bobRoom.findEventById(ids[2]));
  await until(() => bobRoom.getUnreadNotificationCount(NotificationCountType.Total) === 0, "all read");
  await until(() => bobRoom.getAccountData("m.fully_read")?.getContent().event_id === ids[2], "the read marker");
});

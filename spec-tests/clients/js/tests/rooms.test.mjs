// Rooms through matrix-js-sdk: DMs, invites and joins, directory and aliases, profiles,
// power levels, leaving and forgetting.
import assert from "node:assert/strict";
import { test } from "node:test";

import { sdk, startServer, startSyncing, until } from "../harness.mjs";

const { Preset, Visibility, KnownMembership } = sdk;

test("a DM, a group room, the directory and a profile change", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => server.register(n)));
  await startSyncing(bob);

  const { room_id: dm } = await alice.createRoom({
    preset: Preset.TrustedPrivateChat,
    is_direct: true,
    invite: [bob.getUserId()],
  });
  await alice.setAccountData("m.direct", { [bob.getUserId()]: [dm] });
  assert.deepEqual((await alice.getAccountDataFromServer("m.direct")), { [bob.getUserId()]: [dm] });
  const invited = await until(() => bob.getRoom(dm), "the DM invite");
  assert.equal(invited.getMyMembership(), KnownMembership.Invite);
  assert.equal(invited.getDMInviter(), alice.getUserId());
  await bob.joinRoom(dm);
  await until(() => invited.getMyMembership() === KnownMembership.Join, "bob joined");

  const { room_id: team } = await alice.createRoom({
    preset: Preset.PublicChat,
    visibility: Visibility.Public,
    name: "개발팀",
    topic: "standup",
    room_alias_name: "devteam",
  });
  assert.equal((await carol.getRoomIdForAlias("#devteam:localhost")).room_id, team);
  const listed = await carol.publicRooms({ filter: { generic_search_term: "개발" } });
  assert.deepEqual(listed.chunk.map((r) => [r.room_id, r.name, r.canonical_alias]), [
    [team, "개발팀", "#devteam:localhost"],
  ]);
  await carol.joinRoom("#devteam:localhost");
  await bob.joinRoom(team);
  const bobTeam = await until(() => bob.getRoom(team), "the team room at bob");
  await until(() => bobTeam.getJoinedMemberCount() === 3, "three members");
  assert.equal(bobTeam.name, "개발팀");

  await carol.setDisplayName("캐롤");
  await until(() => bobTeam.getMember(carol.getUserId())?.name === "캐롤", "carol's new name in the room");
});

test("power levels refuse, then allow; leaving and forgetting", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const [alice, bob] = await Promise.all(["alice", "bob"].map((n) => server.register(n)));
  const { room_id: roomId } = await alice.createRoom({ preset: Preset.PublicChat, name: "원래 이름" });
  await bob.joinRoom(roomId);
  await startSyncing(alice);
  await startSyncing(bob);

  await assert.rejects(bob.setRoomName(roomId, "bob's"), (e) => e.errcode === "M_FORBIDDEN" && e.httpStatus === 403);
  await until(() => alice.getRoom(roomId)?.getMember(bob.getUserId()), "bob at alice");
  await alice.setPowerLevel(roomId, bob.getUserId(), 50);
  const bobRoom = await until(() => bob.getRoom(roomId), "bob's room");
  await until(() => bobRoom.getMember(bob.getUserId())?.powerLevel === 50, "bob at 50");
  await bob.setRoomName(roomId, "bob's");
  await until(() => alice.getRoom(roomId).name === "bob's", "the new name");
  await assert.rejects(bob.setPowerLevel(roomId, bob.getUserId(), 100), (e) => e.errcode === "M_FORBIDDEN");

  await assert.rejects(bob.forget(roomId), (e) => e.httpStatus === 400);
  await bob.leave(roomId);
  await until(() => bobRoom.getMyMembership() === KnownMembership.Leave, "bob left");
  await until(() => alice.getRoom(roomId).getJoinedMemberCount() === 1, "alice alone");
  await bob.forget(roomId);
  const { joined_rooms } = await bob.getJoinedRooms();
  assert.ok(!joined_rooms.includes(roomId));
});

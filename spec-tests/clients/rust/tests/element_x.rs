//! What Element X does on a phone, through its engine (matrix-sdk's `SyncService` and
//! `RoomListService` over simplified sliding sync) against the real `sori` binary.

use futures_util::StreamExt;
use matrix_sdk::ruma::api::client::keys::get_keys;
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::events::receipt::ReceiptThread;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use matrix_sdk::{Client, RoomState};
use matrix_sdk_ui::eyeball_im::Vector;
use matrix_sdk_ui::room_list_service::RoomListItem;
use matrix_sdk_ui::room_list_service::filters::new_filter_non_left;
use matrix_sdk_ui::sync_service::SyncService;
use matrix_sdk_ui::timeline::RoomExt;
use sori_matrix_sdk_tests::{Server, eventually, wait_for_list};

fn names(list: &Vector<RoomListItem>) -> Vec<String> {
    list.iter()
        .map(|room| {
            room.cached_display_name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        })
        .collect()
}

fn notifications(list: &Vector<RoomListItem>, room: &RoomId) -> Option<u64> {
    list.iter()
        .find(|item| item.room_id() == room)
        .map(|item| item.unread_notification_counts().notification_count)
}

async fn started(client: &Client) -> SyncService {
    let sync = SyncService::builder(client.clone())
        .build()
        .await
        .expect("sync service");
    sync.start().await;
    sync
}

/// Alice creates a named room and Bob joins it.
async fn shared_room(alice: &Client, bob: &Client, name: &str) -> OwnedRoomId {
    let mut request = CreateRoomRequest::new();
    request.name = Some(name.to_owned());
    request.invite = vec![bob.user_id().unwrap().to_owned()];
    let room = alice.create_room(request).await.expect("create room");
    bob.join_room_by_id(room.room_id())
        .await
        .expect("bob joins");
    room.room_id().to_owned()
}

async fn say(client: &Client, room: &RoomId, body: &str) -> matrix_sdk::ruma::OwnedEventId {
    let room = client.get_room(room).expect("a room the client has joined");
    room.send(RoomMessageEventContent::text_plain(body))
        .await
        .expect("send")
        .response
        .event_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_list_has_names_unread_counts_and_reorders_on_new_messages() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    // Both clients are up before anything is sent: the rooms are encrypted (the server's
    // default for private rooms), and a sender's client waits for the recipients' device keys.
    let sync = started(&alice).await;
    let bob_sync = started(&bob).await;

    let design = shared_room(&alice, &bob, "Design").await;
    let ops = shared_room(&alice, &bob, "Ops").await;
    let support = shared_room(&alice, &bob, "Support").await;
    say(&bob, &support, "ticket 4411 is closed").await;
    say(&bob, &design, "new mockups are up").await;
    let last_in_design = say(&bob, &design, "please review by Friday").await;

    let room_list = sync.room_list_service();
    let all = room_list.all_rooms().await.expect("all rooms list");
    let (diffs, controller) = all.entries_with_dynamic_adapters(50);
    controller.set_filter(Box::new(new_filter_non_left()));
    let mut diffs = Box::pin(diffs);
    let mut list = Vector::new();

    // The most recently active room first; counts are what the server counted for Alice.
    wait_for_list(&mut list, &mut diffs, "the first room list", |list| {
        names(list) == ["Design", "Support", "Ops"]
            && notifications(list, &design) == Some(2)
            && notifications(list, &support) == Some(1)
            && notifications(list, &ops) == Some(0)
    })
    .await;

    // A new message moves its room to the top and counts as unread.
    say(&bob, &ops, "deploy at 16:00").await;
    wait_for_list(&mut list, &mut diffs, "Ops bumped to the top", |list| {
        names(list) == ["Ops", "Design", "Support"] && notifications(list, &ops) == Some(1)
    })
    .await;

    // Reading on this device clears the count the list shows.
    let alice_design = alice.get_room(&design).expect("alice's room");
    alice_design
        .send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, last_in_design)
        .await
        .expect("read receipt");
    wait_for_list(&mut list, &mut diffs, "Design read", |list| {
        notifications(list, &design) == Some(0) && notifications(list, &ops) == Some(1)
    })
    .await;

    sync.stop().await;
    bob_sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_dm_is_joined_from_the_invite_and_decrypts() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let alice_sync = started(&alice).await;
    let bob_sync = started(&bob).await;

    // Bob opens an encrypted DM with Alice (matrix-sdk turns encryption on for DMs).
    let dm = bob
        .create_dm(alice.user_id().unwrap())
        .await
        .expect("create DM");
    let dm_id = dm.room_id().to_owned();
    assert!(dm.latest_encryption_state().await.unwrap().is_encrypted());

    // The invite reaches Alice's room list.
    let all = alice_sync
        .room_list_service()
        .all_rooms()
        .await
        .expect("all rooms list");
    let (diffs, controller) = all.entries_with_dynamic_adapters(50);
    controller.set_filter(Box::new(new_filter_non_left()));
    let mut diffs = Box::pin(diffs);
    let mut list = Vector::new();
    wait_for_list(&mut list, &mut diffs, "the DM invite", |list| {
        list.iter()
            .any(|room| room.room_id() == dm_id && room.state() == RoomState::Invited)
    })
    .await;

    let invited = alice.get_room(&dm_id).expect("invited room");
    // The SDK lists the room as soon as it knows it; the stripped state lands in its store
    // right after.
    let inviter = eventually("the invite's details in Alice's store", || async {
        invited.invite_details().await.ok()
    })
    .await
    .inviter;
    assert_eq!(
        inviter.map(|member| member.user_id().to_owned()).as_deref(),
        bob.user_id()
    );
    // The invite says it is direct.
    assert!(
        invited.is_direct().await.unwrap(),
        "the invite is marked direct"
    );
    invited.join().await.expect("join from the invite");

    // Joined, the DM is named after Bob and marked direct.
    wait_for_list(
        &mut list,
        &mut diffs,
        "the joined DM named after Bob",
        |list| {
            list.iter().any(|room| {
                room.room_id() == dm_id
                    && room.state() == RoomState::Joined
                    && room.cached_display_name().map(|n| n.to_string()).as_deref() == Some("bob")
            })
        },
    )
    .await;
    // Joined, it stays a DM for Alice: the server records the accepted direct invite in her
    // `m.direct` (the SDK skips that when its own sync reported the join first).
    eventually("the DM to be direct for Alice", || async {
        invited.is_direct().await.unwrap().then_some(())
    })
    .await;

    // Alice's device keys are on the server before Bob sends (her client uploads them on its
    // first sync), so Bob's client shares the room key with her device when it sends.
    let alice_id = alice.user_id().unwrap().to_owned();
    let alice_device = alice.device_id().unwrap().to_owned();
    eventually("Alice's device keys on the server", || async {
        let mut query = get_keys::v3::Request::new();
        query.device_keys.insert(alice_id.clone(), Vec::new());
        let keys = bob.send(query).await.ok()?;
        keys.device_keys
            .get(&alice_id)?
            .get(&alice_device)
            .map(|_| ())
    })
    .await;
    let sent = say(&bob, &dm_id, "the launch moves to Thursday").await;

    // Alice's timeline shows the plaintext, decrypted by her own device.
    let timeline = invited.timeline().await.expect("timeline");
    let (mut items, mut updates) = timeline.subscribe().await;
    let find = |items: &Vector<_>| -> Option<(String, bool)> {
        items.iter().find_map(
            |item: &std::sync::Arc<matrix_sdk_ui::timeline::TimelineItem>| {
                let event = item.as_event()?;
                if event.event_id() != Some(&sent) {
                    return None;
                }
                let body = event.content().as_message()?.body().to_owned();
                Some((body, event.encryption_info().is_some()))
            },
        )
    };
    let deadline = tokio::time::Instant::now() + sori_matrix_sdk_tests::PATIENCE;
    let (body, was_encrypted) = loop {
        if let Some(found) = find(&items) {
            break found;
        }
        match tokio::time::timeout_at(deadline, updates.next()).await {
            Ok(Some(diffs)) => diffs.into_iter().for_each(|diff| diff.apply(&mut items)),
            _ => panic!("Bob's message never decrypted on Alice's side: {items:#?}"),
        }
    };
    assert_eq!(body, "the launch moves to Thursday");
    assert!(was_encrypted, "the message travelled encrypted");

    alice_sync.stop().await;
    bob_sync.stop().await;
}

//! To-device messages: events sent straight to devices, outside any room (clients share room
//! keys this way). Each waits in its device's inbox under the count of its send, goes out in
//! `/sync` in order, and is deleted only once the device syncs from a token past it, so a
//! response lost on the way is sent again.

use std::sync::Arc;

use ruma::{DeviceId, OwnedServerName, UserId};
use serde_json::Value;

use crate::appservice::Appservices;
use crate::appservice::sender::Queued;
use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, StoreExt, Table, keys};
use crate::watchers::Watchers;

/// Most messages one sync response carries; the rest follow in the next ones.
pub const MAX_PER_SYNC: usize = 100;

/// One message for one device.
pub struct Delivery<'a> {
    pub user: &'a UserId,
    pub device: &'a DeviceId,
    pub content: &'a Value,
}

pub struct ToDevice {
    store: Arc<dyn Store>,
    watchers: Arc<Watchers>,
    appservices: Arc<Appservices>,
}

impl ToDevice {
    pub fn new(
        store: Arc<dyn Store>,
        watchers: Arc<Watchers>,
        appservices: Arc<Appservices>,
    ) -> Self {
        Self {
            store,
            watchers,
            appservices,
        }
    }

    /// Puts one `event_type` message from `sender` in each delivery's inbox, once per
    /// transaction id of the sending device (a retried request changes nothing). Messages to
    /// an appservice's users are also queued for the appservice when it asked for them
    /// (MSC4203), and those to users of other servers (`remote`: an `m.direct_to_device` EDU
    /// per server) in their servers' queues, in the same commit.
    pub fn send(
        &self,
        sender: &UserId,
        sender_device: &DeviceId,
        txn_id: &str,
        event_type: &str,
        deliveries: &[Delivery<'_>],
        remote: &[(OwnedServerName, Value)],
    ) -> Result<()> {
        let txn_key = keys::transaction(sender.as_str(), sender_device.as_str(), txn_id);
        if self
            .store
            .get(Table::ToDeviceTransactions, &txn_key)?
            .is_some()
        {
            return Ok(());
        }
        let mut events = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let event = serde_json::json!({
                "type": event_type,
                "sender": sender,
                "content": delivery.content,
            });
            events.push(
                serde_json::to_vec(&event)
                    .map_err(|e| Error::internal(format!("serialising a to-device event: {e}")))?,
            );
        }
        let for_appservices: Vec<(&str, Vec<u8>)> = self
            .appservices
            .wanting_ephemeral()
            .filter_map(|appservice| {
                let messages: Vec<Value> = deliveries
                    .iter()
                    .filter(|d| appservice.is_user(d.user))
                    .map(|d| {
                        serde_json::json!({
                            "type": event_type,
                            "sender": sender,
                            "content": d.content,
                            "to_user_id": d.user,
                            "to_device_id": d.device,
                        })
                    })
                    .collect();
                (!messages.is_empty())
                    .then(|| (appservice.id(), Queued::ToDevice(messages).encode()))
            })
            .collect();
        self.store.commit(&mut |count| {
            let mut batch = Batch::new();
            for (appservice, queued) in &for_appservices {
                batch.put(
                    Table::AppserviceQueue,
                    keys::appservice_queue(appservice, count),
                    queued.clone(),
                );
            }
            for (index, (delivery, event)) in deliveries.iter().zip(&events).enumerate() {
                batch.put(
                    Table::ToDevice,
                    keys::to_device(
                        delivery.user.as_str(),
                        delivery.device.as_str(),
                        count,
                        index as u32,
                    ),
                    event.clone(),
                );
            }
            batch.put(Table::ToDeviceTransactions, txn_key.clone(), Vec::new());
            for (server, edu) in remote {
                crate::federation::sender::queue_edu(&mut batch, server, count, edu);
            }
            for delivery in deliveries {
                batch.put(
                    Table::ToDeviceContacts,
                    keys::to_device_contact(sender.as_str(), delivery.user.as_str()),
                    keys::u64_be(count).to_vec(),
                );
            }
            Ok(batch)
        })?;
        let mut woken: Vec<&UserId> = Vec::new();
        for delivery in deliveries {
            if !woken.contains(&delivery.user) {
                self.watchers.wake(delivery.user);
                woken.push(delivery.user);
            }
        }
        if !remote.is_empty() {
            self.watchers.wake_federation();
        }
        for (appservice, _) in &for_appservices {
            if let Some(appservice) = self.appservices.by_id(appservice) {
                appservice.wake.notify_one();
            }
        }
        Ok(())
    }

    /// The count of `sender`'s latest to-device message to `recipient`, if any.
    pub fn last_sent(&self, sender: &UserId, recipient: &UserId) -> Result<Option<u64>> {
        Ok(self
            .store
            .get(
                Table::ToDeviceContacts,
                &keys::to_device_contact(sender.as_str(), recipient.as_str()),
            )?
            .and_then(|value| Some(u64::from_be_bytes(value.as_slice().try_into().ok()?))))
    }

    /// The device's messages sent after `after` up to `upto`, oldest first, at most
    /// [`MAX_PER_SYNC`]; and the position to continue from (the count of the last one given,
    /// or `upto` when none are left).
    pub fn pending(
        &self,
        user: &UserId,
        device: &DeviceId,
        after: u64,
        upto: u64,
    ) -> Result<(Vec<Value>, u64)> {
        let lower = keys::to_device(user.as_str(), device.as_str(), after.saturating_add(1), 0);
        let upper = keys::to_device(user.as_str(), device.as_str(), upto.saturating_add(1), 0);
        let mut events = Vec::new();
        let mut last = upto;
        for entry in self.store.scan(
            Table::ToDevice,
            KeyRange::between(&lower, &upper),
            Direction::Forward,
        )? {
            let (key, value) = entry?;
            let count = keys::to_device_count(&key).unwrap_or(upto);
            if events.len() >= MAX_PER_SYNC {
                // Stop between sends, so a position never splits one send's messages.
                if count != last {
                    return Ok((events, last));
                }
            }
            last = count;
            events.push(
                serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt to-device event: {e}")))?,
            );
        }
        Ok((events, upto))
    }

    /// Deletes the device's messages up to `upto`: it synced from a token past them, so it
    /// has them.
    pub fn acknowledge(&self, user: &UserId, device: &DeviceId, upto: u64) -> Result<()> {
        let prefix = keys::to_device_of(user.as_str(), device.as_str());
        let upper = keys::to_device(user.as_str(), device.as_str(), upto.saturating_add(1), 0);
        let mut batch = Batch::new();
        for entry in self.store.scan(
            Table::ToDevice,
            KeyRange::between(&prefix, &upper),
            Direction::Forward,
        )? {
            batch.delete(Table::ToDevice, entry?.0);
        }
        if batch.is_empty() {
            Ok(())
        } else {
            self.store.write(batch)
        }
    }

    /// Drops the inboxes of deleted devices.
    pub fn remove_devices(&self, user: &UserId, devices: &[String]) -> Result<()> {
        let mut batch = Batch::new();
        for device in devices {
            let prefix = keys::to_device_of(user.as_str(), device);
            for entry in self.store.scan_prefix(Table::ToDevice, &prefix)? {
                batch.delete(Table::ToDevice, entry?.0);
            }
        }
        if batch.is_empty() {
            Ok(())
        } else {
            self.store.write(batch)
        }
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_device_id, owned_user_id};
    use serde_json::json;

    use super::*;

    #[test]
    fn messages_wait_in_order_until_acknowledged_and_a_retry_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        let inbox = ToDevice::new(
            store.clone(),
            Arc::new(Watchers::default()),
            Arc::new(Appservices::load(&crate::config::Config::default()).unwrap()),
        );
        let (alice, bob) = (owned_user_id!("@a:x"), owned_user_id!("@b:x"));
        let (phone, laptop) = (owned_device_id!("PHONE"), owned_device_id!("LAPTOP"));
        for n in 0..(MAX_PER_SYNC + 5) {
            let content = json!({"n": n});
            let deliveries = [
                Delivery {
                    user: &bob,
                    device: &phone,
                    content: &content,
                },
                Delivery {
                    user: &bob,
                    device: &laptop,
                    content: &content,
                },
            ];
            inbox
                .send(&alice, &phone, &format!("t{n}"), "m.test", &deliveries, &[])
                .unwrap();
        }
        // A retried transaction adds nothing.
        let content = json!({"n": "again"});
        let again = [Delivery {
            user: &bob,
            device: &phone,
            content: &content,
        }];
        inbox
            .send(&alice, &phone, "t0", "m.test", &again, &[])
            .unwrap();

        let upto = store.committed_count();
        let (first, next) = inbox.pending(&bob, &phone, 0, upto).unwrap();
        assert_eq!(first.len(), MAX_PER_SYNC);
        assert_eq!(
            first[0],
            json!({"type": "m.test", "sender": "@a:x", "content": {"n": 0}})
        );
        assert!(next < upto);
        // Not acknowledged yet: asking again from the same place gives the same messages.
        assert_eq!(inbox.pending(&bob, &phone, 0, upto).unwrap().0, first);
        inbox.acknowledge(&bob, &phone, next).unwrap();
        let (rest, end) = inbox.pending(&bob, &phone, 0, upto).unwrap();
        let numbers: Vec<_> = rest.iter().map(|e| e["content"]["n"].clone()).collect();
        assert_eq!(
            numbers,
            (MAX_PER_SYNC..MAX_PER_SYNC + 5)
                .map(|n| json!(n))
                .collect::<Vec<_>>()
        );
        assert_eq!(end, upto);
        // The other device's inbox is its own.
        assert_eq!(
            inbox.pending(&bob, &laptop, 0, upto).unwrap().0.len(),
            MAX_PER_SYNC
        );
        inbox.remove_devices(&bob, &["LAPTOP".to_owned()]).unwrap();
        assert!(inbox.pending(&bob, &laptop, 0, upto).unwrap().0.is_empty());
    }
}

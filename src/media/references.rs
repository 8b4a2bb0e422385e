//! Which files of this server an event refers to: every `mxc://<this server>/<id>` string in its
//! content (`url`, `info.thumbnail_url`, `avatar_url`, … wherever clients put them). Encrypted
//! events refer to nothing the server can read.

use std::collections::BTreeSet;

use serde_json::Value;

/// The media ids of `server_name` that `content` refers to.
pub fn media_ids(server_name: &str, content: &Value) -> BTreeSet<String> {
    let prefix = format!("mxc://{server_name}/");
    let mut found = BTreeSet::new();
    let mut pending = vec![content];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) => {
                if let Some(id) = text.strip_prefix(&prefix)
                    && is_media_id(id)
                {
                    found.insert(id.to_owned());
                }
            }
            Value::Array(items) => pending.extend(items),
            Value::Object(fields) => pending.extend(fields.values()),
            _ => {}
        }
    }
    found
}

/// Whether the event shows the file as an avatar (a room's, or a member's own): avatars are
/// shown wherever the room or user appears, so any local user may fetch them.
pub fn shows_as_avatar(event_type: &str, content: &Value, media_id: &str) -> bool {
    let field = match event_type {
        "m.room.avatar" => "url",
        "m.room.member" => "avatar_url",
        _ => return false,
    };
    content[field]
        .as_str()
        .and_then(|url| url.rsplit_once('/'))
        .is_some_and(|(_, id)| id == media_id)
}

/// Media ids are made of letters, digits, `-` and `_` (as the spec's opaque ids are in
/// practice); anything else names no file.
pub fn is_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_this_servers_well_formed_ids_are_found_anywhere_in_the_content() {
        let content = json!({
            "body": "photo.jpg",
            "url": "mxc://example.org/abc123",
            "info": {"thumbnail_url": "mxc://example.org/thumb_1", "w": 10},
            "list": ["mxc://other.org/nope", "mxc://example.org/../etc", "mxc://example.org/x-y"],
        });
        let ids: Vec<String> = media_ids("example.org", &content).into_iter().collect();
        assert_eq!(ids, vec!["abc123", "thumb_1", "x-y"]);
        assert!(media_ids("example.org", &json!({"ciphertext": "mxc://example.org"})).is_empty());
    }

    #[test]
    fn avatars_are_recognised_by_event_type_and_field() {
        let member = json!({"membership": "join", "avatar_url": "mxc://example.org/face"});
        assert!(shows_as_avatar("m.room.member", &member, "face"));
        assert!(!shows_as_avatar("m.room.message", &member, "face"));
        let room = json!({"url": "mxc://example.org/logo"});
        assert!(shows_as_avatar("m.room.avatar", &room, "logo"));
        assert!(!shows_as_avatar("m.room.avatar", &room, "face"));
    }
}

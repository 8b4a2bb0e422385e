//! Server ACLs (`m.room.server_acl`): which servers may take part in a room. A denied server's
//! events, ephemeral events and requests about the room are refused; its users' events already
//! in the room stay. The name matched is the server's host, without its port; `*` and `?` are
//! wildcards, and a server is allowed only when it matches `allow` and not `deny` (and, with
//! `allow_ip_literals` false, is not an IP address).

use ruma::{RoomId, ServerName};
use serde_json::Value;

use super::timeline::Timeline;
use crate::error::{Error, Result};

/// The rules of one `m.room.server_acl` event.
#[derive(Debug)]
pub struct ServerAcl {
    allow: Vec<String>,
    deny: Vec<String>,
    allow_ip_literals: bool,
}

impl ServerAcl {
    /// The rules of an event's content; fields of the wrong type count as absent (the spec's
    /// defaults: nothing allowed, nothing denied, IP literals allowed).
    pub fn from_content(content: &Value) -> Self {
        let patterns = |name: &str| {
            content[name]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            allow: patterns("allow"),
            deny: patterns("deny"),
            allow_ip_literals: content["allow_ip_literals"].as_bool().unwrap_or(true),
        }
    }

    pub fn allows(&self, server: &ServerName) -> bool {
        let host = server.host();
        let ip_literal = host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok();
        if ip_literal && !self.allow_ip_literals {
            return false;
        }
        if self.deny.iter().any(|pattern| glob(pattern, host)) {
            return false;
        }
        self.allow.iter().any(|pattern| glob(pattern, host))
    }
}

/// Whether `value` matches `pattern` (`*`: any run of characters, `?`: one character), ASCII
/// letters in any case (server names are case-insensitive).
fn glob(pattern: &str, value: &str) -> bool {
    let pattern: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let value: Vec<char> = value.to_ascii_lowercase().chars().collect();
    // Greedy matching with backtracking to the last `*`: linear in practice, never exponential.
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, v));
                p += 1;
            }
            Some(c) if *c == '?' || *c == value[v] => {
                p += 1;
                v += 1;
            }
            _ => match star {
                Some((star_p, star_v)) => {
                    p = star_p + 1;
                    v = star_v + 1;
                    star = Some((star_p, star_v + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

impl Timeline {
    /// Refuses `server` (403) when the room's server ACL denies it; rooms without an ACL, and
    /// rooms this server does not have, allow every server.
    pub fn refuse_if_denied(&self, room_id: &RoomId, server: &ServerName) -> Result<()> {
        let Some(room) = self.room(room_id)? else {
            return Ok(());
        };
        let Some(acl) = self.state_event(room.short, "m.room.server_acl", "")? else {
            return Ok(());
        };
        if ServerAcl::from_content(&acl.content()).allows(server) {
            Ok(())
        } else {
            Err(Error::forbidden(
                "Your server is denied by the room's server ACL",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn server(name: &str) -> &ServerName {
        <&ServerName>::try_from(name).unwrap()
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("*", "example.org"));
        assert!(glob("*.example.org", "matrix.example.org"));
        assert!(!glob("*.example.org", "example.org"));
        assert!(glob("matrix?.example.org", "matrix1.example.org"));
        assert!(!glob("matrix?.example.org", "matrix12.example.org"));
        assert!(glob("EVIL.example.org", "evil.EXAMPLE.org"));
        assert!(!glob("evil", "evil.example.org"));
        assert!(glob("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!glob("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn deny_wins_over_allow_and_ports_do_not_count() {
        let acl = ServerAcl::from_content(&json!({"allow": ["*"], "deny": ["evil.example.org"]}));
        assert!(acl.allows(server("good.example.org")));
        assert!(!acl.allows(server("evil.example.org")));
        assert!(!acl.allows(server("evil.example.org:8448")));
        assert!(acl.allows(server("10.0.0.1:8448")));
    }

    #[test]
    fn ip_literals_and_missing_allow() {
        let acl = ServerAcl::from_content(&json!({"allow": ["*"], "allow_ip_literals": false}));
        assert!(!acl.allows(server("10.0.0.1:8448")));
        assert!(!acl.allows(server("[2001:db8::1]:8448")));
        assert!(acl.allows(server("example.org")));
        // No `allow` allows nothing; a list of the wrong type counts as absent.
        let acl = ServerAcl::from_content(&json!({"deny": "evil.example.org"}));
        assert!(!acl.allows(server("example.org")));
    }
}

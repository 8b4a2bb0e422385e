//! The user directory (`POST /_matrix/client/v3/user_directory/search`): whom a user can find,
//! and how a search matches a name. Every word of the search must match the start of a word of
//! the display name or user id, or, for Hangul, any part of a word: Korean names are written
//! without spaces, so "민수" finds 김민수. There is no romanization ("김" does not find
//! "Alex Kim").

use std::collections::BTreeSet;

use ruma::{OwnedMxcUri, OwnedUserId, UserId};

use crate::error::Result;
use crate::services::Services;

/// A user the search found.
pub struct Found {
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
    pub avatar_url: Option<OwnedMxcUri>,
}

/// The users `searcher` may find whose names match `term`, best first, at most `limit`; and
/// whether more matched.
pub fn search(
    services: &Services,
    searcher: &UserId,
    term: &str,
    limit: usize,
) -> Result<(Vec<Found>, bool)> {
    let terms: Vec<String> = term
        .to_lowercase()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if terms.is_empty() {
        return Ok((Vec::new(), false));
    }
    let mut matches = Vec::new();
    for user_id in findable(services, searcher)? {
        let display_name = services.profiles.displayname(&user_id)?;
        let Some(rank) = rank(&terms, &user_id, display_name.as_deref()) else {
            continue;
        };
        let avatar_url = services
            .profiles
            .field(&user_id, "avatar_url")?
            .and_then(|v| v.as_str().map(OwnedMxcUri::from));
        let sort_name = display_name
            .as_deref()
            .unwrap_or(user_id.localpart())
            .to_lowercase();
        matches.push((
            rank,
            sort_name,
            Found {
                user_id,
                display_name,
                avatar_url,
            },
        ));
    }
    matches.sort_by(|a, b| (a.0, &a.1, &a.2.user_id).cmp(&(b.0, &b.1, &b.2.user_id)));
    let limited = matches.len() > limit;
    Ok((
        matches
            .into_iter()
            .take(limit)
            .map(|(_, _, found)| found)
            .collect(),
        limited,
    ))
}

/// Everyone `searcher` may find: with `search_all_users`, every active local account;
/// otherwise the searcher, those who share a room with them, and the members of rooms in the
/// public room directory. Deactivated accounts never.
fn findable(services: &Services, searcher: &UserId) -> Result<BTreeSet<OwnedUserId>> {
    let accounts = &services.accounts;
    if services.config.user_directory.search_all_users {
        return Ok(accounts.active_users()?.into_iter().collect());
    }
    let timeline = &services.timeline;
    let mut rooms = timeline.joined_rooms(searcher)?;
    rooms.extend(
        services
            .directory
            .published_rooms(crate::rooms::directory::Listing::All)?,
    );
    let mut users = BTreeSet::from([searcher.to_owned()]);
    for room in rooms {
        users.extend(timeline.joined_members(&room)?);
    }
    let mut findable = BTreeSet::new();
    for user in users {
        if !accounts.is_local(&user) || accounts.is_active(&user)? {
            findable.insert(user);
        }
    }
    Ok(findable)
}

/// How well the search words match a user, lower being better: 0 when the search is the whole
/// name or user id, 1 when it starts it, 2 when every word matches somewhere; `None` when a
/// word matches nothing.
fn rank(terms: &[String], user_id: &UserId, display_name: Option<&str>) -> Option<u8> {
    let name = display_name.unwrap_or_default().to_lowercase();
    let localpart = user_id.localpart().to_lowercase();
    let words: Vec<&str> = name
        .split(|c: char| !c.is_alphanumeric())
        .chain(localpart.split(|c: char| !c.is_alphanumeric()))
        .chain([localpart.as_str(), user_id.as_str()])
        .filter(|w| !w.is_empty())
        .collect();
    let matches = |term: &String| {
        words.iter().any(|word| {
            word.starts_with(term.as_str()) || (has_hangul(term) && word.contains(term.as_str()))
        })
    };
    if !terms.iter().all(matches) {
        return None;
    }
    let whole = terms.join(" ");
    Some(if name == whole || localpart == whole {
        0
    } else if name.starts_with(&whole) || localpart.starts_with(&whole) {
        1
    } else {
        2
    })
}

fn has_hangul(text: &str) -> bool {
    text.chars()
        .any(|c| matches!(c, '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        text.to_lowercase()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    fn user(id: &str) -> OwnedUserId {
        id.try_into().unwrap()
    }

    #[test]
    fn hangul_matches_inside_a_name_and_latin_by_word_start() {
        let minsu = user("@minsu.kim:example.org");
        assert_eq!(rank(&terms("민수"), &minsu, Some("김민수")), Some(2));
        assert_eq!(rank(&terms("김민"), &minsu, Some("김민수")), Some(1));
        assert_eq!(rank(&terms("김민수"), &minsu, Some("김민수")), Some(0));
        assert_eq!(
            rank(&terms("kim"), &minsu, Some("김민수")),
            Some(2),
            "by user id"
        );
        assert_eq!(
            rank(&terms("insu"), &minsu, Some("김민수")),
            None,
            "not inside Latin"
        );
        let alex = user("@alex:example.org");
        assert_eq!(
            rank(&terms("김"), &alex, Some("Alex Kim")),
            None,
            "no romanization"
        );
        assert_eq!(rank(&terms("KIM al"), &alex, Some("Alex Kim")), Some(2));
        assert_eq!(rank(&terms("alex kim"), &alex, Some("Alex Kim")), Some(0));
        assert_eq!(
            rank(&terms("alex bob"), &alex, Some("Alex Kim")),
            None,
            "every word"
        );
        assert_eq!(rank(&terms("\"*(:\\"), &alex, Some("Alex Kim")), None);
    }
}

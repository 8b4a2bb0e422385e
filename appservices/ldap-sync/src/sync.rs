//! One sync: what the directory says, what the bridge made last time (its state file), and
//! the changes between them, applied in an order that never leaves anyone somewhere they
//! should not be for longer than the run. A second run with an unchanged directory changes
//! nothing. The state is saved as the run goes, so a run cut short goes on about where it
//! stopped (every step is safe to redo).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::directory::Directory;
use crate::matrix::{Failure, Homeserver};

/// What the bridge made, as it left it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct State {
    pub company_space: Option<String>,
    pub company_name: Option<String>,
    #[serde(default)]
    pub units: BTreeMap<String, UnitState>,
    #[serde(default)]
    pub people: BTreeMap<String, PersonState>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct UnitState {
    pub name: String,
    pub parent: Option<String>,
    pub space: String,
    pub room: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct PersonState {
    pub deactivated: bool,
    /// The profile fields the bridge set (display name included).
    #[serde(default)]
    pub profile: BTreeMap<String, String>,
    /// The units whose space and room the person is in.
    #[serde(default)]
    pub units: BTreeSet<String>,
    /// In the company space.
    #[serde(default)]
    pub in_company: bool,
}

impl State {
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the state file {} is damaged: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Written whole (a temporary file renamed over the old one).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, bytes)
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// What one run did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: usize,
    pub updated: usize,
    pub deactivated: usize,
    pub reactivated: usize,
    pub moved: usize,
    pub units_created: usize,
    pub units_changed: usize,
    pub units_removed: usize,
    pub failed: usize,
    /// Each change, in words (printed by `--dry-run`).
    pub changes: Vec<String>,
}

impl Summary {
    /// Adds another part's counts and changes to this one.
    fn add(&mut self, other: Summary) {
        self.created += other.created;
        self.updated += other.updated;
        self.deactivated += other.deactivated;
        self.reactivated += other.reactivated;
        self.moved += other.moved;
        self.units_created += other.units_created;
        self.units_changed += other.units_changed;
        self.units_removed += other.units_removed;
        self.failed += other.failed;
        self.changes.extend(other.changes);
    }

    pub fn line(&self) -> String {
        format!(
            "created {}, updated {}, deactivated {}, reactivated {}, moved {}; units created {}, changed {}, removed {}; failed {}",
            self.created,
            self.updated,
            self.deactivated,
            self.reactivated,
            self.moved,
            self.units_created,
            self.units_changed,
            self.units_removed,
            self.failed
        )
    }
}

/// The desired profile of a person: display name, the units' names, and the directory's
/// fields.
fn profile(person: &crate::directory::Person, directory: &Directory) -> BTreeMap<String, String> {
    let mut profile = person.fields.clone();
    profile.insert("displayname".into(), person.display_name.clone());
    let departments: Vec<&str> = person
        .units
        .iter()
        .filter_map(|id| directory.units.get(id).map(|u| u.name.as_str()))
        .collect();
    if !departments.is_empty() {
        profile.insert("io.sori.department".into(), departments.join(", "));
    }
    profile
}

/// Units ordered so that every parent comes before its children.
fn top_down(directory: &Directory) -> Vec<String> {
    let mut ordered: Vec<String> = Vec::new();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    while ordered.len() < directory.units.len() {
        let before = ordered.len();
        for (id, unit) in &directory.units {
            if placed.contains(id) {
                continue;
            }
            if unit.parent.as_ref().is_none_or(|p| placed.contains(p)) {
                ordered.push(id.clone());
                placed.insert(id.clone());
            }
        }
        if ordered.len() == before {
            // A parent that is not a unit any more: the rest hang off the company.
            for id in directory.units.keys() {
                if placed.insert(id.clone()) {
                    ordered.push(id.clone());
                }
            }
        }
    }
    ordered
}

/// Applies the difference between `directory` and `state` (or, with `dry`, only lists it).
pub async fn run(
    homeserver: &Homeserver,
    directory: &Directory,
    state: &mut State,
    company_name: &str,
    alias_prefix: &str,
    state_file: Option<&Path>,
    dry: bool,
) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let save = |state: &State| -> Result<(), String> {
        match state_file {
            Some(path) if !dry => state.save(path),
            _ => Ok(()),
        }
    };
    let fail = |summary: &mut Summary, what: String, failure: Failure| {
        tracing::warn!(%failure, "{what}");
        summary.failed += 1;
    };

    // The company space.
    let company = match &state.company_space {
        Some(space) => space.clone(),
        None => {
            summary
                .changes
                .push(format!("create the company space {company_name:?}"));
            if dry {
                String::new()
            } else {
                let space = homeserver
                    .ensure_room(&format!("{alias_prefix}company"), company_name, true)
                    .await
                    .map_err(|f| format!("creating the company space: {f}"))?;
                state.company_space = Some(space.clone());
                state.company_name = Some(company_name.to_owned());
                save(state)?;
                space
            }
        }
    };
    if state.company_name.as_deref() != Some(company_name) && state.company_space.is_some() {
        summary
            .changes
            .push(format!("rename the company space to {company_name:?}"));
        if !dry {
            match homeserver
                .set_state(
                    &company,
                    "m.room.name",
                    "",
                    &serde_json::json!({"name": company_name}),
                )
                .await
            {
                Ok(()) => state.company_name = Some(company_name.to_owned()),
                Err(f) => fail(&mut summary, "renaming the company space".into(), f),
            }
        }
    }

    // Units, parents first: made, renamed, moved in the tree.
    for id in top_down(directory) {
        let unit = &directory.units[&id];
        let parent_space = |state: &State| -> String {
            unit.parent
                .as_ref()
                .and_then(|p| state.units.get(p))
                .map(|u| u.space.clone())
                .unwrap_or_else(|| company.clone())
        };
        match state.units.get(&id).cloned() {
            None => {
                summary.units_created += 1;
                summary
                    .changes
                    .push(format!("create the unit {:?}", unit.name));
                if dry {
                    continue;
                }
                let made = async {
                    let space = homeserver
                        .ensure_room(&format!("{alias_prefix}unit_{id}"), &unit.name, true)
                        .await?;
                    let room = homeserver
                        .ensure_room(&format!("{alias_prefix}room_{id}"), &unit.name, false)
                        .await?;
                    homeserver.link(&space, &room).await?;
                    homeserver.link(&parent_space(state), &space).await?;
                    Ok::<_, Failure>((space, room))
                }
                .await;
                match made {
                    Ok((space, room)) => {
                        state.units.insert(
                            id.clone(),
                            UnitState {
                                name: unit.name.clone(),
                                parent: unit.parent.clone(),
                                space,
                                room,
                            },
                        );
                        save(state)?;
                    }
                    Err(f) => fail(&mut summary, format!("creating the unit {}", unit.name), f),
                }
            }
            Some(known) => {
                if known.name != unit.name {
                    summary.units_changed += 1;
                    summary.changes.push(format!(
                        "rename the unit {:?} to {:?}",
                        known.name, unit.name
                    ));
                    if !dry {
                        let content = serde_json::json!({"name": unit.name});
                        let renamed = async {
                            homeserver
                                .set_state(&known.space, "m.room.name", "", &content)
                                .await?;
                            homeserver
                                .set_state(&known.room, "m.room.name", "", &content)
                                .await
                        }
                        .await;
                        match renamed {
                            Ok(()) => {
                                state.units.get_mut(&id).expect("known").name = unit.name.clone()
                            }
                            Err(f) => fail(&mut summary, format!("renaming {}", unit.name), f),
                        }
                    }
                }
                if known.parent != unit.parent {
                    summary.units_changed += 1;
                    summary
                        .changes
                        .push(format!("move the unit {:?} in the tree", unit.name));
                    if !dry {
                        let old_parent = known
                            .parent
                            .as_ref()
                            .and_then(|p| state.units.get(p))
                            .map(|u| u.space.clone())
                            .unwrap_or_else(|| company.clone());
                        let new_parent = parent_space(state);
                        let moved = async {
                            homeserver.unlink(&old_parent, &known.space).await?;
                            homeserver.link(&new_parent, &known.space).await
                        }
                        .await;
                        match moved {
                            Ok(()) => {
                                state.units.get_mut(&id).expect("known").parent =
                                    unit.parent.clone()
                            }
                            Err(f) => fail(&mut summary, format!("moving {}", unit.name), f),
                        }
                    }
                }
                if state.units.get(&id) != Some(&known) {
                    save(state)?;
                }
            }
        }
    }

    // People: accounts, profiles, memberships; several at a time (each one's steps in order).
    let units = state.units.clone();
    let known_people = state.people.clone();
    let mut outcomes = futures_util::stream::iter(
        directory
            .people
            .iter()
            .filter(|(_, person)| !person.disabled),
    )
    .map(|(localpart, person)| {
        let known = known_people.get(localpart).cloned();
        let place = Place {
            company: &company,
            units: &units,
        };
        async move {
            let outcome =
                sync_person(homeserver, directory, localpart, person, known, place, dry).await;
            (localpart, outcome)
        }
    })
    .buffer_unordered(PEOPLE_AT_ONCE);
    let mut saved_at = std::time::Instant::now();
    while let Some((localpart, outcome)) = outcomes.next().await {
        summary.add(outcome.summary);
        if let Some(current) = outcome.changed {
            state.people.insert(localpart.clone(), current);
            // Saved now and then, not after each person: writing the whole file every time
            // made a big first run quadratic. A run cut short redoes at most a few seconds of
            // people, and every step is safe to redo.
            if saved_at.elapsed() >= SAVE_EVERY {
                save(state)?;
                saved_at = std::time::Instant::now();
            }
        }
    }
    save(state)?;

    // Leavers and the disabled: deactivated (logged out, out of their rooms).
    let leavers: Vec<String> = state
        .people
        .iter()
        .filter(|(lp, p)| {
            !p.deactivated
                && directory
                    .people
                    .get(*lp)
                    .is_none_or(|person| person.disabled)
        })
        .map(|(lp, _)| lp.clone())
        .collect();
    for localpart in leavers {
        let user = homeserver.user_id(&localpart);
        summary.deactivated += 1;
        summary.changes.push(format!("deactivate {user}"));
        if dry {
            continue;
        }
        match homeserver.deactivate(&user).await {
            Ok(()) => {
                let person = state.people.get_mut(&localpart).expect("listed");
                person.deactivated = true;
                person.units.clear();
                person.in_company = false;
                save(state)?;
            }
            Err(f) => fail(&mut summary, format!("deactivating {user}"), f),
        }
    }

    // Units gone from the directory: taken out of the tree (their rooms stay, with their
    // history; their members left above).
    let gone: Vec<String> = state
        .units
        .keys()
        .filter(|id| !directory.units.contains_key(*id))
        .cloned()
        .collect();
    for id in gone {
        let unit = state.units[&id].clone();
        summary.units_removed += 1;
        summary
            .changes
            .push(format!("remove the unit {:?}", unit.name));
        if dry {
            continue;
        }
        let parent = unit
            .parent
            .as_ref()
            .and_then(|p| state.units.get(p))
            .map(|u| u.space.clone())
            .unwrap_or_else(|| company.clone());
        match homeserver.unlink(&parent, &unit.space).await {
            Ok(()) => {
                state.units.remove(&id);
                save(state)?;
            }
            Err(f) => fail(&mut summary, format!("removing the unit {}", unit.name), f),
        }
    }
    save(state)?;
    Ok(summary)
}

/// People synced at once: enough to keep the homeserver busy, few enough to be polite.
const PEOPLE_AT_ONCE: usize = 8;
/// How often the state file is written while people are synced.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Where the bridge puts people: the company space and the units it made.
#[derive(Clone, Copy)]
struct Place<'a> {
    company: &'a str,
    units: &'a BTreeMap<String, UnitState>,
}

/// What syncing one person did: the counts and words for the summary, and the person's new
/// state if it changed.
struct PersonOutcome {
    summary: Summary,
    changed: Option<PersonState>,
}

/// Brings one person (enabled in the directory) in step: account, profile, memberships.
async fn sync_person(
    homeserver: &Homeserver,
    directory: &Directory,
    localpart: &str,
    person: &crate::directory::Person,
    known: Option<PersonState>,
    place: Place<'_>,
    dry: bool,
) -> PersonOutcome {
    let mut summary = Summary::default();
    let fail = |summary: &mut Summary, what: String, failure: Failure| {
        tracing::warn!(%failure, "{what}");
        summary.failed += 1;
    };
    let user = homeserver.user_id(localpart);
    match &known {
        None => {
            summary.created += 1;
            summary.changes.push(format!("create {user}"));
        }
        Some(k) if k.deactivated => {
            summary.reactivated += 1;
            summary.changes.push(format!("bring back {user}"));
        }
        Some(_) => {}
    }
    let mut current = known.clone().unwrap_or_default();
    if !dry && known.as_ref().is_none_or(|k| k.deactivated) {
        if let Err(f) = homeserver.register(localpart).await {
            fail(&mut summary, format!("registering {user}"), f);
            return PersonOutcome {
                summary,
                changed: None,
            };
        }
        current.deactivated = false;
        current.units.clear();
        current.in_company = false;
    }
    // Profile.
    let wanted = profile(person, directory);
    let mut changed = false;
    for (key, value) in &wanted {
        if current.profile.get(key) != Some(value) {
            changed = true;
            if !dry {
                match homeserver.set_profile(&user, key, Some(value)).await {
                    Ok(()) => {
                        current.profile.insert(key.clone(), value.clone());
                    }
                    Err(f) => fail(&mut summary, format!("setting {key} of {user}"), f),
                }
            }
        }
    }
    let stale: Vec<String> = current
        .profile
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .cloned()
        .collect();
    for key in stale {
        changed = true;
        if !dry {
            match homeserver.set_profile(&user, &key, None).await {
                Ok(()) => {
                    current.profile.remove(&key);
                }
                Err(f) => fail(&mut summary, format!("removing {key} of {user}"), f),
            }
        }
    }
    if changed && known.as_ref().is_some_and(|k| !k.deactivated) {
        summary.updated += 1;
        summary
            .changes
            .push(format!("update the profile of {user}"));
    }
    // Memberships: the company space, and each unit's space and room.
    if !current.in_company && !dry {
        match homeserver.add_member(place.company, &user).await {
            Ok(()) => current.in_company = true,
            Err(f) => fail(&mut summary, format!("adding {user} to the company"), f),
        }
    }
    let wanted_units = &person.units;
    let joining: Vec<String> = wanted_units.difference(&current.units).cloned().collect();
    let leaving: Vec<String> = current.units.difference(wanted_units).cloned().collect();
    if known.as_ref().is_some_and(|k| !k.deactivated)
        && (!joining.is_empty() || !leaving.is_empty())
    {
        summary.moved += 1;
        summary.changes.push(format!("move {user} between units"));
    }
    if dry {
        return PersonOutcome {
            summary,
            changed: None,
        };
    }
    for id in joining {
        let Some(unit) = place.units.get(&id) else {
            continue;
        };
        let added = async {
            homeserver.add_member(&unit.space, &user).await?;
            homeserver.add_member(&unit.room, &user).await
        }
        .await;
        match added {
            Ok(()) => {
                current.units.insert(id);
            }
            Err(f) => fail(&mut summary, format!("adding {user} to a unit"), f),
        }
    }
    for id in leaving {
        if let Some(unit) = place.units.get(&id) {
            let removed = async {
                homeserver.remove_member(&unit.room, &user).await?;
                homeserver.remove_member(&unit.space, &user).await
            }
            .await;
            if let Err(f) = removed {
                fail(&mut summary, format!("removing {user} from a unit"), f);
                continue;
            }
        }
        current.units.remove(&id);
    }
    let changed = (known.as_ref() != Some(&current)).then_some(current);
    PersonOutcome { summary, changed }
}

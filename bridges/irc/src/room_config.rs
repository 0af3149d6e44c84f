//! A channel's modes as MUC's room configuration (XEP-0045 §10.2): what
//! 324 tells becomes the form's values, and a submitted form the MODE
//! changes that make the channel so.

use estuary_bridge::RoomConfig;

use crate::isupport::{ChanModes, ModeKind};
use crate::modes::{ModeChange, ModeSet};

/// The mode letters that are part of a room's configuration.
const CONFIG_MODES: [char; 7] = ['m', 'i', 't', 's', 'p', 'k', 'l'];

/// The modes of a channel that make its room configuration: which of
/// [`CONFIG_MODES`] are set, and the limit. A connection keeps these for
/// each joined channel from 324 and MODE lines, so that the room's
/// disco#info tells them without asking the server; the key itself is
/// not kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigModes {
    set: ModeSet,
    limit: u32,
}

impl ConfigModes {
    /// The modes a channel has, as 324 lists them.
    pub fn of(chanmodes: &ChanModes, set: &[ModeChange]) -> ConfigModes {
        let mut modes = ConfigModes::default();
        for change in set.iter().filter(|c| c.adding) {
            modes.apply(chanmodes, change);
        }
        modes
    }

    /// Follow one change of a MODE line; whether it is one of these modes.
    pub fn apply(&mut self, chanmodes: &ChanModes, change: &ModeChange) -> bool {
        let settable = chanmodes
            .kind(change.mode)
            .is_some_and(|k| k != ModeKind::List && k != ModeKind::Prefix);
        if !CONFIG_MODES.contains(&change.mode) || !settable {
            return false;
        }
        if change.adding {
            self.set.insert(change.mode);
        } else {
            self.set.remove(change.mode);
        }
        if change.mode == 'l' {
            self.limit = change
                .arg
                .as_deref()
                .filter(|_| change.adding)
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
        }
        true
    }

    /// The configuration these modes make, for the settings the server knows.
    pub fn config(self, chanmodes: &ChanModes) -> RoomConfig {
        let flag = |mode: char| chanmodes.kind(mode).map(|_| self.set.contains(mode));
        let secret = flag('s');
        let private = flag('p');
        RoomConfig {
            moderated: flag('m'),
            members_only: flag('i'),
            occupants_change_subject: flag('t').map(|t| !t),
            public: match (secret, private) {
                (None, None) => None,
                (s, p) => Some(!s.unwrap_or(false) && !p.unwrap_or(false)),
            },
            password_protected: flag('k'),
            password: None,
            max_users: flag('l').map(|_| self.limit),
        }
    }
}

/// The configuration a channel with the modes `set` (as 324 lists them)
/// has, for the settings the server knows.
pub fn config_of(chanmodes: &ChanModes, set: &[ModeChange]) -> RoomConfig {
    ConfigModes::of(chanmodes, set).config(chanmodes)
}

/// The MODE changes that give a channel with the modes `set` the settings
/// `change` names; a setting the server does not know is an error.
pub fn changes_to(
    chanmodes: &ChanModes,
    set: &[ModeChange],
    change: &RoomConfig,
) -> Result<Vec<ModeChange>, String> {
    let mut changes = Vec::new();
    let known = |mode: char| {
        chanmodes
            .kind(mode)
            .ok_or_else(|| format!("this server has no channel mode '{mode}'"))
    };
    let now = ConfigModes::of(chanmodes, set);
    let is_set = |mode: char| now.set.contains(mode);
    let mut toggles = vec![
        ('m', change.moderated),
        ('i', change.members_only),
        ('t', change.occupants_change_subject.map(|any| !any)),
    ];
    match change.public {
        Some(true) => toggles.extend(
            ['s', 'p']
                .into_iter()
                .filter(|&m| chanmodes.kind(m).is_some())
                .map(|m| (m, Some(false))),
        ),
        Some(false) if !is_set('s') && !is_set('p') => toggles.push(('s', Some(true))),
        _ => {}
    }
    for (mode, on) in toggles {
        let Some(on) = on else { continue };
        known(mode)?;
        if is_set(mode) != on {
            changes.push(ModeChange {
                adding: on,
                mode,
                arg: None,
            });
        }
    }
    // The key, which the tracked modes never keep: taking it off needs it.
    let key = set
        .iter()
        .find(|c| c.adding && c.mode == 'k')
        .and_then(|c| c.arg.as_deref());
    match (change.password_protected, change.password.as_deref()) {
        (Some(false), _) if is_set('k') => {
            known('k')?;
            // Servers want the key to take it off; one hidden from us as `*` works on most.
            changes.push(ModeChange::remove('k', key.unwrap_or("*")));
        }
        (Some(true) | None, Some(password)) if !password.is_empty() => {
            known('k')?;
            if !valid_key(password) {
                return Err("a channel key is one word of at most 23 characters".into());
            }
            if key != Some(password) {
                changes.push(ModeChange::add('k', password));
            }
        }
        (Some(true), _) if !is_set('k') => {
            return Err("a password-protected room needs a password".into());
        }
        _ => {}
    }
    if let Some(max) = change.max_users {
        if known('l')? == ModeKind::List {
            return Err("this server's mode 'l' is no limit".into());
        }
        if max != now.limit {
            changes.push(if max == 0 {
                ModeChange {
                    adding: false,
                    mode: 'l',
                    arg: None,
                }
            } else {
                ModeChange::add('l', max.to_string())
            });
        }
    }
    Ok(changes)
}

/// A key IRC servers take: one parameter, no comma (which separates keys
/// in a JOIN), at most 23 bytes as RFC 2812's servers keep.
fn valid_key(key: &str) -> bool {
    key.len() <= 23
        && !key.starts_with(':')
        && !key.contains(|c: char| c == ',' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(modes: &[(char, Option<&str>)]) -> Vec<ModeChange> {
        modes
            .iter()
            .map(|&(mode, arg)| ModeChange {
                adding: true,
                mode,
                arg: arg.map(str::to_owned),
            })
            .collect()
    }

    fn line(changes: &[ModeChange]) -> String {
        crate::modes::mode_lines(changes, 20)
            .into_iter()
            .map(|l| l.join(" "))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    #[test]
    fn modes_read_as_a_room_configuration() {
        let chanmodes = ChanModes::default();
        let config = config_of(
            &chanmodes,
            &set(&[
                ('n', None),
                ('t', None),
                ('k', Some("sesame")),
                ('l', Some("50")),
            ]),
        );
        assert_eq!(config.moderated, Some(false));
        assert_eq!(config.members_only, Some(false));
        assert_eq!(config.occupants_change_subject, Some(false));
        assert_eq!(config.public, Some(true));
        assert_eq!(config.password_protected, Some(true));
        assert_eq!(config.password, None, "a key is never read back");
        assert_eq!(config.max_users, Some(50));
        let secret = config_of(&chanmodes, &set(&[('s', None)]));
        assert_eq!(secret.public, Some(false));
        assert_eq!(secret.max_users, Some(0));
        let bare = config_of(&ChanModes::parse("b,,,n"), &[]);
        assert_eq!(bare.moderated, None);
        assert_eq!(bare.public, None);
    }

    #[test]
    fn mode_lines_keep_the_configuration_up_to_date() {
        let chanmodes = ChanModes::default();
        let mut modes = ConfigModes::of(&chanmodes, &set(&[('n', None), ('t', None)]));
        let change = |adding, mode, arg: Option<&str>| ModeChange {
            adding,
            mode,
            arg: arg.map(str::to_owned),
        };
        assert!(!modes.apply(&chanmodes, &change(true, 'n', None)));
        assert!(!modes.apply(&chanmodes, &change(true, 'b', Some("*!*@x"))));
        assert!(!modes.apply(&chanmodes, &change(true, 'o', Some("alice"))));
        assert!(modes.apply(&chanmodes, &change(true, 'k', Some("sesame"))));
        assert!(modes.apply(&chanmodes, &change(true, 'l', Some("12"))));
        assert!(modes.apply(&chanmodes, &change(false, 't', None)));
        let config = modes.config(&chanmodes);
        assert_eq!(config.password_protected, Some(true));
        assert_eq!(config.password, None, "the key is not kept");
        assert_eq!(config.max_users, Some(12));
        assert_eq!(config.occupants_change_subject, Some(true));
        assert!(modes.apply(&chanmodes, &change(false, 'l', None)));
        assert!(modes.apply(&chanmodes, &change(false, 'k', Some("*"))));
        let config = modes.config(&chanmodes);
        assert_eq!(config.max_users, Some(0));
        assert_eq!(config.password_protected, Some(false));
        // A mode the server does not have is no setting.
        let bare = ChanModes::parse("b,k,l,nt");
        assert!(!modes.apply(&bare, &change(true, 'm', None)));
    }

    #[test]
    fn a_configuration_becomes_the_modes_that_differ() {
        let chanmodes = ChanModes::default();
        let now = set(&[('n', None), ('t', None), ('k', Some("old"))]);
        let change = RoomConfig {
            moderated: Some(true),
            members_only: Some(false),
            occupants_change_subject: Some(true),
            public: Some(false),
            password_protected: Some(false),
            max_users: Some(20),
            ..RoomConfig::default()
        };
        assert_eq!(
            line(&changes_to(&chanmodes, &now, &change).unwrap()),
            "+m-t+s-k+l old 20"
        );
        let keyed = RoomConfig {
            password_protected: Some(true),
            password: Some("new".into()),
            max_users: Some(0),
            ..RoomConfig::default()
        };
        let limited = set(&[('l', Some("5"))]);
        assert_eq!(
            line(&changes_to(&chanmodes, &limited, &keyed).unwrap()),
            "+k-l new"
        );
        assert!(changes_to(&chanmodes, &now, &RoomConfig::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn what_irc_cannot_take_is_refused() {
        let chanmodes = ChanModes::default();
        let protect = |password: &str| RoomConfig {
            password_protected: Some(true),
            password: Some(password.into()),
            ..RoomConfig::default()
        };
        assert!(changes_to(&chanmodes, &[], &protect("")).is_err());
        assert!(changes_to(&chanmodes, &[], &protect("two words")).is_err());
        assert!(changes_to(&chanmodes, &[], &protect("a,b")).is_err());
        assert!(changes_to(&chanmodes, &[], &protect("x\r\nQUIT")).is_err());
        let moderated = RoomConfig {
            moderated: Some(true),
            ..RoomConfig::default()
        };
        assert!(changes_to(&ChanModes::parse("b,k,l,nt"), &[], &moderated).is_err());
    }
}

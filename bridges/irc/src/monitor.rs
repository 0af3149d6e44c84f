//! The user's IRC contacts on one server, and what is known of their
//! presence. The server follows them for the user through IRCv3 MONITOR
//! (730 online, 731 offline); a server without MONITOR is asked with ISON
//! now and then. away-notify, or extended-monitor where the server has it,
//! tells when an online contact goes away or comes back.

use std::collections::VecDeque;

use estuary_bridge::PresenceShow;

use crate::isupport::Isupport;

/// The longest `MONITOR +` line built, well under 512 bytes with the
/// server's own prefix.
const MAX_TARGETS_LEN: usize = 400;

#[derive(Debug, Default)]
pub struct Contacts {
    entries: Vec<Contact>,
    /// The ISON lines sent and not answered yet, oldest first: an answer
    /// (303) names only who is online of the nicks its line asked after.
    ison_asked: VecDeque<String>,
}

#[derive(Debug)]
struct Contact {
    /// As the user's roster names them: the address their presence carries.
    nick: String,
    /// `nick` folded with the connected server's case mapping; `nick`
    /// itself until a connection says how the server folds.
    folded: String,
    /// What the user was last told; `Offline` until the server says.
    shown: PresenceShow,
}

/// A contact's presence to report: their nick as the user named them.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    pub nick: String,
    pub show: PresenceShow,
    pub status: Option<String>,
}

impl Contacts {
    pub fn new(nicks: impl IntoIterator<Item = String>) -> Contacts {
        let mut contacts = Contacts::default();
        for nick in nicks {
            contacts.add(nick, None);
        }
        contacts
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn fold(nick: &str, isupport: Option<&Isupport>) -> String {
        isupport.map_or_else(|| nick.to_owned(), |i| i.fold(nick))
    }

    /// Follow `nick`; false if it was followed already.
    pub fn add(&mut self, nick: String, isupport: Option<&Isupport>) -> bool {
        let folded = Self::fold(&nick, isupport);
        if self.entries.iter().any(|c| c.folded == folded) {
            return false;
        }
        self.entries.push(Contact {
            nick,
            folded,
            shown: PresenceShow::Offline,
        });
        true
    }

    /// Stop following `nick`; whether it was followed.
    pub fn remove(&mut self, nick: &str, isupport: Option<&Isupport>) -> bool {
        let folded = Self::fold(nick, isupport);
        let before = self.entries.len();
        self.entries.retain(|c| c.folded != folded);
        self.entries.len() != before
    }

    /// A new connection: nicks are compared as this server folds them, and
    /// nothing is known of anyone until it says.
    pub fn connected(&mut self, isupport: &Isupport) {
        for contact in &mut self.entries {
            contact.folded = isupport.fold(&contact.nick);
            contact.shown = PresenceShow::Offline;
        }
        self.ison_asked.clear();
        let mut seen = std::collections::HashSet::new();
        self.entries.retain(|c| seen.insert(c.folded.clone()));
    }

    /// The `MONITOR +` target lists that follow every contact, as many as
    /// the server's limit takes, and how many were left out.
    pub fn monitor_targets(&self, limit: usize) -> (Vec<String>, usize) {
        let taken = self.entries.len().min(limit);
        let nicks = self.entries[..taken].iter().map(|c| c.nick.as_str());
        (target_lists(nicks), self.entries.len() - taken)
    }

    /// 730 or 731: the server's `nick!user@host,...` (or bare nicks) are
    /// online, or offline. Returns what changed for the user.
    pub fn on_monitor_reply(
        &mut self,
        isupport: &Isupport,
        targets: &str,
        online: bool,
    ) -> Vec<Change> {
        targets
            .split(',')
            .filter_map(|target| {
                let nick = target.split('!').next().unwrap_or_default();
                self.set_online(&isupport.fold(nick), online)
            })
            .collect()
    }

    /// The nicks of `ISON` lines that ask after every contact, for a
    /// server without MONITOR, space-separated.
    pub fn ison_lines(&self) -> Vec<String> {
        target_lists(self.entries.iter().map(|c| c.nick.as_str()))
            .into_iter()
            .map(|list| list.replace(',', " "))
            .collect()
    }

    /// An ISON line asking after `nicks` (space-separated) was sent: its
    /// answer is about them.
    pub fn ison_sent(&mut self, nicks: String) {
        self.ison_asked.push_back(nicks);
    }

    /// 303: of the nicks the oldest ISON line asked after, those in
    /// `online` (space-separated) are online and the others offline. None
    /// when no ISON of ours waits (the user typed one): theirs to read.
    pub fn on_ison_reply(&mut self, isupport: &Isupport, online: &str) -> Option<Vec<Change>> {
        let asked = self.ison_asked.pop_front()?;
        let online: Vec<String> = online
            .split_whitespace()
            .map(|n| isupport.fold(n))
            .collect();
        Some(
            asked
                .split(' ')
                .filter_map(|nick| {
                    let folded = isupport.fold(nick);
                    let is_online = online.contains(&folded);
                    self.set_online(&folded, is_online)
                })
                .collect(),
        )
    }

    /// The contact `folded` is online or not: the change for the user, if
    /// it is one. An online contact already known away stays away.
    fn set_online(&mut self, folded: &str, online: bool) -> Option<Change> {
        let contact = self.entries.iter_mut().find(|c| c.folded == folded)?;
        let known = contact.shown != PresenceShow::Offline;
        if online == known {
            return None;
        }
        contact.shown = if online {
            PresenceShow::Online
        } else {
            PresenceShow::Offline
        };
        Some(Change {
            nick: contact.nick.clone(),
            show: contact.shown,
            status: None,
        })
    }

    /// `folded` went away (with `status`) or came back: a change for the
    /// user if that is an online contact.
    pub fn on_away(&mut self, folded: &str, status: Option<&str>) -> Option<Change> {
        let contact = self
            .entries
            .iter_mut()
            .find(|c| c.folded == folded && c.shown != PresenceShow::Offline)?;
        contact.shown = if status.is_some() {
            PresenceShow::Away
        } else {
            PresenceShow::Online
        };
        Some(Change {
            nick: contact.nick.clone(),
            show: contact.shown,
            status: status.map(str::to_owned),
        })
    }

    /// The connection ended: the contacts shown online are offline as far
    /// as the user can tell.
    pub fn disconnected(&mut self, why: &str) -> Vec<Change> {
        self.entries
            .iter_mut()
            .filter(|c| c.shown != PresenceShow::Offline)
            .map(|c| {
                c.shown = PresenceShow::Offline;
                Change {
                    nick: c.nick.clone(),
                    show: PresenceShow::Offline,
                    status: Some(why.to_owned()),
                }
            })
            .collect()
    }
}

/// Comma-separated lists of `nicks`, each short enough for one line.
fn target_lists<'a>(nicks: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut lists = Vec::new();
    let mut current = String::new();
    for nick in nicks {
        if !current.is_empty() && current.len() + 1 + nick.len() > MAX_TARGETS_LEN {
            lists.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(nick);
    }
    if !current.is_empty() {
        lists.push(current);
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isupport() -> Isupport {
        let mut i = Isupport::new();
        i.apply_token("CASEMAPPING=ascii");
        i
    }

    #[test]
    fn replies_are_matched_as_the_server_folds_nicks() {
        let mut contacts = Contacts::new(["bob".to_owned(), "Carol".to_owned()]);
        assert!(!contacts.add("bob".into(), None));
        contacts.connected(&isupport());
        assert!(!contacts.add("BOB".into(), Some(&isupport())));
        let changes = contacts.on_monitor_reply(&isupport(), "BOB!b@host,carol!c@host", true);
        let nicks: Vec<_> = changes.iter().map(|c| c.nick.as_str()).collect();
        assert_eq!(nicks, ["bob", "Carol"]);
        assert!(changes.iter().all(|c| c.show == PresenceShow::Online));
        // Told once: a repeat changes nothing.
        assert!(contacts
            .on_monitor_reply(&isupport(), "bob", true)
            .is_empty());
        assert_eq!(
            contacts.on_monitor_reply(&isupport(), "carol", false),
            [Change {
                nick: "Carol".into(),
                show: PresenceShow::Offline,
                status: None
            }]
        );
    }

    #[test]
    fn away_is_told_only_of_online_contacts() {
        let mut contacts = Contacts::new(["bob".to_owned(), "dave".to_owned()]);
        contacts.connected(&isupport());
        contacts.on_monitor_reply(&isupport(), "bob", true);
        let away = contacts.on_away("bob", Some("lunch")).unwrap();
        assert_eq!(away.show, PresenceShow::Away);
        assert_eq!(away.status.as_deref(), Some("lunch"));
        assert_eq!(contacts.on_away("dave", Some("x")), None);
        assert_eq!(contacts.on_away("eve", None), None);
        // Still online, still away: MONITOR says nothing of away.
        assert!(contacts
            .on_monitor_reply(&isupport(), "bob", true)
            .is_empty());
        assert_eq!(
            contacts.on_away("bob", None).unwrap().show,
            PresenceShow::Online
        );
        let gone = contacts.disconnected("lost");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].nick, "bob");
        assert_eq!(gone[0].status.as_deref(), Some("lost"));
        assert!(contacts.disconnected("again").is_empty());
    }

    #[test]
    fn ison_answers_are_read_against_what_each_line_asked() {
        let mut contacts = Contacts::new(["bob".to_owned(), "carol".to_owned()]);
        contacts.connected(&isupport());
        assert_eq!(contacts.ison_lines(), ["bob carol"]);
        contacts.ison_sent("bob carol".into());
        contacts.ison_sent("dave".into());
        contacts.add("dave".into(), Some(&isupport()));
        let changes = contacts.on_ison_reply(&isupport(), "Carol").unwrap();
        assert_eq!(
            changes,
            [Change {
                nick: "carol".into(),
                show: PresenceShow::Online,
                status: None
            }]
        );
        // The second answer is about dave alone: carol stays online.
        assert_eq!(contacts.on_ison_reply(&isupport(), "").unwrap(), []);
        let changes = contacts.on_ison_reply(&isupport(), "");
        assert_eq!(changes, None, "an ISON the user typed");
        contacts.ison_sent("bob carol".into());
        let changes = contacts.on_ison_reply(&isupport(), "bob").unwrap();
        let shown: Vec<_> = changes.iter().map(|c| (c.nick.as_str(), c.show)).collect();
        assert_eq!(
            shown,
            [
                ("bob", PresenceShow::Online),
                ("carol", PresenceShow::Offline)
            ]
        );
    }

    #[test]
    fn targets_fit_the_limit_and_the_line() {
        let nicks: Vec<String> = (0..100).map(|i| format!("nick{i:02}xxxxxxxx")).collect();
        let contacts = Contacts::new(nicks.clone());
        let (lists, left) = contacts.monitor_targets(90);
        assert_eq!(left, 10);
        assert!(lists.len() > 1);
        assert!(lists.iter().all(|l| l.len() <= MAX_TARGETS_LEN));
        let all: Vec<&str> = lists.iter().flat_map(|l| l.split(',')).collect();
        assert_eq!(
            all,
            nicks[..90].iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert!(contacts.monitor_targets(usize::MAX).1 == 0);
        assert!(Contacts::default().monitor_targets(5).0.is_empty());
    }
}

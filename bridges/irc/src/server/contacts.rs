//! The server task's part in following the user's contacts: MONITOR (or
//! ISON) on each connection, and their replies as contact presence. What
//! is known of each contact is [`crate::monitor::Contacts`]'s.

use estuary_bridge::{PresenceShow, RemoteAddress, RemoteEvent, RemotePresence};
use tracing::{debug, warn};

use super::{Live, ServerTask};
use crate::isupport::Isupport;
use crate::line::IrcLine;
use crate::monitor;

impl ServerTask {
    /// Follow a contact or stop while no connection is up: the next one
    /// tells the server.
    pub(super) fn note_watch(&mut self, nick: String, watch: bool) {
        if watch {
            self.contacts.add(nick, None);
        } else {
            self.contacts.remove(&nick, None);
        }
    }

    /// Ask the new connection's server to follow every contact.
    pub(super) fn monitor_contacts(&mut self, live: &Live) {
        self.contacts.connected(&live.me.isupport);
        if self.contacts.is_empty() {
            return;
        }
        let Some(limit) = live.me.isupport.monitor else {
            debug!("the server has no MONITOR; contacts are asked after with ISON");
            self.ask_ison(live);
            return;
        };
        let (lists, left_out) = self.contacts.monitor_targets(limit);
        if left_out > 0 {
            warn!(
                limit,
                left_out, "the server follows fewer contacts than the user has"
            );
        }
        for targets in lists {
            live.writer.send("MONITOR", &["+", &targets]);
        }
    }

    pub(super) fn ask_ison(&mut self, live: &Live) {
        for nicks in self.contacts.ison_lines() {
            let params: Vec<&str> = nicks.split(' ').collect();
            if live.writer.send("ISON", &params) {
                self.contacts.ison_sent(nicks);
            }
        }
    }

    /// What the user sees of their contacts now that no connection does.
    pub(super) fn contacts_unseen(&mut self, why: &str) {
        for change in self.contacts.disconnected(why) {
            self.emit_contact(change);
        }
        self.server_presence(PresenceShow::Offline, why);
    }

    /// The server's own presence, as biboumi gives it: its JID is online in
    /// the user's roster while the user is connected there. A gateway with
    /// a fixed server has no JID for it.
    pub(super) fn server_presence(&mut self, show: PresenceShow, status: &str) {
        if self.fixed.is_some() {
            return;
        }
        self.emit(RemoteEvent::Presence(RemotePresence {
            user: RemoteAddress::new(self.server.clone()),
            show,
            status: Some(status.to_owned()),
        }));
    }

    pub(super) fn emit_contact(&mut self, change: monitor::Change) {
        let user = self.user(&change.nick);
        self.emit(RemoteEvent::Presence(RemotePresence {
            user,
            show: change.show,
            status: change.status,
        }));
    }

    /// Follow a contact or stop, on a live connection.
    pub(super) fn watch_contact(&mut self, live: &Live, nick: String, watch: bool) {
        let isupport = &live.me.isupport;
        let changed = if watch {
            self.contacts.add(nick.clone(), Some(isupport))
        } else {
            self.contacts.remove(&nick, Some(isupport))
        };
        if changed && isupport.monitor.is_some() {
            live.writer
                .send("MONITOR", &[if watch { "+" } else { "-" }, &nick]);
        } else if changed && watch && live.writer.send("ISON", &[&nick]) {
            // No MONITOR: ask now rather than at the next round.
            self.contacts.ison_sent(nick);
        }
    }

    /// A MONITOR reply (730 online, 731 offline, 734 list full) or an
    /// answer to an ISON of ours (303): whether it was one.
    pub(super) fn on_contact_reply(&mut self, isupport: &Isupport, line: &IrcLine) -> bool {
        let changes = match line.command.as_str() {
            // `730 me :nick!user@host,...`, `731 me :nick,...`
            "730" | "731" => {
                let online = line.command == "730";
                self.contacts
                    .on_monitor_reply(isupport, line.param(1), online)
            }
            // `303 me :nick nick`
            "303" => match self.contacts.on_ison_reply(isupport, line.param(1)) {
                Some(changes) => changes,
                None => return false,
            },
            // `734 me limit nicks :text`
            "734" => {
                warn!(
                    limit = line.param(1),
                    nicks = line.param(2),
                    "the server follows no more contacts"
                );
                Vec::new()
            }
            _ => return false,
        };
        for change in changes {
            self.emit_contact(change);
        }
        true
    }
}

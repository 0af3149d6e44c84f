//! WHOIS queries the gateway asks for itself (a contact's vCard), as
//! opposed to those the user types to the server's JID: the replies about
//! a nick asked after are gathered here and never shown as notices.

use estuary_bridge::BridgeError;
use tokio::sync::oneshot;

/// What a WHOIS told of a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WhoisInfo {
    /// As the server spells it.
    pub nick: String,
    pub user: Option<String>,
    pub host: Option<String>,
    pub realname: Option<String>,
    pub server: Option<String>,
    /// The services account they are logged in to.
    pub account: Option<String>,
    pub away: Option<String>,
    pub idle_secs: Option<u64>,
    pub secure: bool,
}

impl WhoisInfo {
    /// A few lines for a person to read (a vCard's description).
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        if let Some(realname) = &self.realname {
            lines.push(format!("Real name: {realname}"));
        }
        if let (Some(user), Some(host)) = (&self.user, &self.host) {
            let via = self
                .server
                .as_deref()
                .map(|s| format!(" on {s}"))
                .unwrap_or_default();
            lines.push(format!("{user}@{host}{via}"));
        }
        if let Some(account) = &self.account {
            lines.push(format!("Logged in as {account}"));
        }
        if let Some(away) = &self.away {
            lines.push(format!("Away: {away}"));
        }
        if let Some(idle) = self.idle_secs {
            lines.push(format!("Idle for {}", idle_text(idle)));
        }
        if self.secure {
            lines.push("Connected over TLS".to_owned());
        }
        lines.join("\n")
    }
}

fn idle_text(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} seconds"),
        s if s < 7200 => format!("{} minutes", s / 60),
        s if s < 172_800 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

pub type WhoisReply = oneshot::Sender<Result<WhoisInfo, BridgeError>>;

/// The WHOIS queries waiting for their end (318), by case-folded nick.
#[derive(Default)]
pub struct WhoisQueries {
    pending: Vec<(String, WhoisInfo, Vec<WhoisReply>)>,
    /// Nicks answered "no such nick" (401) whose 318 is still to come.
    refused: Vec<String>,
}

impl WhoisQueries {
    /// Wait for the answer about `folded`; true if a WHOIS must be sent
    /// (none is already on its way, or everyone gave up waiting for it).
    pub fn wait(&mut self, folded: String, reply: WhoisReply) -> bool {
        self.pending
            .retain(|(n, _, replies)| *n != folded || replies.iter().any(|r| !r.is_closed()));
        if let Some((_, _, replies)) = self.pending.iter_mut().find(|(n, ..)| *n == folded) {
            replies.push(reply);
            return false;
        }
        self.pending
            .push((folded, WhoisInfo::default(), vec![reply]));
        true
    }

    /// The answer being gathered about `folded`, if it is awaited.
    pub fn gathering(&mut self, folded: &str) -> Option<&mut WhoisInfo> {
        self.pending
            .iter_mut()
            .find(|(n, ..)| n == folded)
            .map(|(_, info, _)| info)
    }

    /// The end of an answer (318): whether it ended one of ours.
    pub fn end(&mut self, folded: &str) -> bool {
        if let Some(pos) = self.refused.iter().position(|n| n == folded) {
            self.refused.swap_remove(pos);
            return true;
        }
        self.finish(folded, Ok(()))
    }

    /// No such nick (401): whether it answers one of ours.
    pub fn no_such_nick(&mut self, folded: &str, text: &str) -> bool {
        let ours = self.finish(folded, Err(BridgeError::NotFound(text.to_owned())));
        if ours {
            self.refused.push(folded.to_owned());
        }
        ours
    }

    fn finish(&mut self, folded: &str, result: Result<(), BridgeError>) -> bool {
        let Some(pos) = self.pending.iter().position(|(n, ..)| n == folded) else {
            return false;
        };
        let (_, info, replies) = self.pending.swap_remove(pos);
        for reply in replies {
            let _ = reply.send(result.clone().map(|()| info.clone()));
        }
        true
    }

    /// The connection is gone: nobody gets an answer.
    pub fn fail_all(&mut self, reason: &str) {
        self.refused.clear();
        for (_, _, replies) in self.pending.drain(..) {
            for reply in replies {
                let _ = reply.send(Err(BridgeError::Unavailable(reason.to_owned())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_gathered_per_nick_and_shared() {
        let mut queries = WhoisQueries::default();
        let (first, a) = oneshot::channel();
        let (second, b) = oneshot::channel();
        assert!(queries.wait("bob".into(), first));
        assert!(!queries.wait("bob".into(), second), "one WHOIS for both");
        let info = queries.gathering("bob").unwrap();
        info.nick = "Bob".into();
        info.away = Some("lunch".into());
        assert!(queries.gathering("eve").is_none());
        assert!(queries.end("bob"));
        assert!(!queries.end("bob"), "a 318 of the user's own WHOIS");
        for rx in [a, b] {
            let info = rx.blocking_recv().unwrap().unwrap();
            assert!(info.describe().contains("Away: lunch"));
        }
        let (third, c) = oneshot::channel();
        queries.wait("eve".into(), third);
        assert!(queries.no_such_nick("eve", "No such nick"));
        assert!(c.blocking_recv().unwrap().is_err());
        assert!(queries.end("eve"), "the 318 after the 401 is ours too");
        assert!(!queries.no_such_nick("zed", "No such nick"));
    }

    #[test]
    fn the_description_reads_as_lines() {
        let info = WhoisInfo {
            nick: "bob".into(),
            user: Some("b".into()),
            host: Some("example.net".into()),
            realname: Some("Bob B".into()),
            server: Some("irc.example.net".into()),
            account: Some("bob".into()),
            away: None,
            idle_secs: Some(300),
            secure: true,
        };
        assert_eq!(
            info.describe(),
            "Real name: Bob B\nb@example.net on irc.example.net\nLogged in as bob\n\
             Idle for 5 minutes\nConnected over TLS"
        );
    }
}

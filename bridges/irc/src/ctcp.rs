//! CTCP between a user's connection and IRC users: the queries it answers
//! (VERSION, PING, CLIENTINFO), and the answers it waits for on the user's
//! behalf (XEP-0092 software version and XEP-0199 ping become CTCP VERSION
//! and PING, as in biboumi).

use std::time::{Duration, Instant};

use estuary_bridge::BridgeError;
use tokio::sync::oneshot;

/// The CTCP verbs the gateway answers, for CLIENTINFO.
const ANSWERED: &str = "ACTION CLIENTINFO PING VERSION";

/// At most this many answers in each window: every answer is a line through
/// the connection's flood control, ahead of the user's own messages, so a
/// CTCP flood must not be able to hold those up.
const ANSWERS_PER_WINDOW: u8 = 5;
const WINDOW: Duration = Duration::from_secs(10);

/// What answers a query: the CTCP reply's arguments, or why there is none.
pub type CtcpReply = oneshot::Sender<Result<String, BridgeError>>;

/// A query sent to an IRC user whose answer is awaited.
struct Waiting {
    /// Case-folded, as answers are matched.
    nick: String,
    verb: &'static str,
    reply: CtcpReply,
}

/// One connection's CTCP state. Created on the first CTCP, since most
/// connections never see one.
#[derive(Default)]
pub struct CtcpExchange {
    waiting: Vec<Waiting>,
    /// When the current answer window began, and how many answers it had.
    window: Option<(Instant, u8)>,
}

impl CtcpExchange {
    /// Wait for `folded_nick`'s answer to a `verb` query.
    pub fn wait(&mut self, folded_nick: String, verb: &'static str, reply: CtcpReply) {
        // Whoever gave up waiting (a timeout) left a closed sender behind.
        self.waiting.retain(|w| !w.reply.is_closed());
        self.waiting.push(Waiting {
            nick: folded_nick,
            verb,
            reply,
        });
    }

    /// A CTCP reply (in a NOTICE) from `folded_nick`: handed to the oldest
    /// query it answers. Whether one did.
    pub fn answered(&mut self, folded_nick: &str, verb: &str, args: &str) -> bool {
        let Some(pos) = self
            .waiting
            .iter()
            .position(|w| w.nick == folded_nick && w.verb.eq_ignore_ascii_case(verb))
        else {
            return false;
        };
        let _ = self.waiting.remove(pos).reply.send(Ok(args.to_owned()));
        true
    }

    /// The server says there is nobody by that nick (401): its queries fail.
    pub fn no_such_nick(&mut self, folded_nick: &str, text: &str) {
        for waiting in self.take(|w| w.nick == folded_nick) {
            let _ = waiting
                .reply
                .send(Err(BridgeError::NotFound(text.to_owned())));
        }
    }

    /// The connection is gone: no answer will come.
    pub fn fail_all(&mut self, reason: &str) {
        for waiting in self.take(|_| true) {
            let _ = waiting
                .reply
                .send(Err(BridgeError::Unavailable(reason.to_owned())));
        }
    }

    fn take(&mut self, which: impl Fn(&Waiting) -> bool) -> Vec<Waiting> {
        let (taken, kept) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| which(w));
        self.waiting = kept;
        taken
    }

    /// The reply to a CTCP query (`verb`, `args`) from an IRC user, as
    /// `(verb, args)` for a NOTICE; `None` for a verb the gateway does not
    /// answer, or past the rate limit.
    pub fn answer(&mut self, verb: &str, args: &str, now: Instant) -> Option<(String, String)> {
        let verb = verb.to_ascii_uppercase();
        let args = match verb.as_str() {
            "VERSION" => format!("Estuary {} (an XMPP gateway)", env!("CARGO_PKG_VERSION")),
            "PING" => args.to_owned(),
            "CLIENTINFO" => ANSWERED.to_owned(),
            _ => return None,
        };
        let (since, count) = match self.window {
            Some((since, count)) if now.duration_since(since) < WINDOW => (since, count),
            _ => (now, 0),
        };
        if count >= ANSWERS_PER_WINDOW {
            return None;
        }
        self.window = Some((since, count + 1));
        Some((verb, args))
    }
}

/// A software version as CTCP VERSION tells it (`HexChat 2.16.1 / Linux`):
/// the first word is the name, the rest the version.
pub fn software(reply: &str) -> estuary_bridge::Software {
    let reply = reply.trim();
    let (name, version) = reply.split_once(' ').unwrap_or((reply, ""));
    estuary_bridge::Software {
        name: name.to_owned(),
        version: version.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_by_nick_and_verb_oldest_first() {
        let mut ctcp = CtcpExchange::default();
        let (first, mut first_rx) = oneshot::channel();
        let (second, mut second_rx) = oneshot::channel();
        let (ping, mut ping_rx) = oneshot::channel();
        ctcp.wait("bob".into(), "VERSION", first);
        ctcp.wait("bob".into(), "VERSION", second);
        ctcp.wait("bob".into(), "PING", ping);
        assert!(!ctcp.answered("carol", "VERSION", "x"));
        assert!(ctcp.answered("bob", "version", "irssi 1.4"));
        assert_eq!(first_rx.try_recv().unwrap().unwrap(), "irssi 1.4");
        assert!(second_rx.try_recv().is_err(), "still waiting");
        ctcp.no_such_nick("bob", "No such nick");
        assert!(matches!(
            second_rx.try_recv().unwrap(),
            Err(BridgeError::NotFound(_))
        ));
        assert!(matches!(
            ping_rx.try_recv().unwrap(),
            Err(BridgeError::NotFound(_))
        ));
        assert!(!ctcp.answered("bob", "PING", "1"), "nobody waits any more");
    }

    #[test]
    fn a_query_given_up_is_forgotten() {
        let mut ctcp = CtcpExchange::default();
        let (gone, rx) = oneshot::channel();
        ctcp.wait("bob".into(), "PING", gone);
        drop(rx);
        let (live, mut live_rx) = oneshot::channel();
        ctcp.wait("bob".into(), "PING", live);
        assert_eq!(ctcp.waiting.len(), 1);
        ctcp.fail_all("lost");
        assert!(matches!(
            live_rx.try_recv().unwrap(),
            Err(BridgeError::Unavailable(_))
        ));
    }

    #[test]
    fn known_queries_are_answered_within_the_rate() {
        let mut ctcp = CtcpExchange::default();
        let now = Instant::now();
        assert_eq!(ctcp.answer("TIME", "", now), None);
        assert_eq!(
            ctcp.answer("ping", "12345", now),
            Some(("PING".into(), "12345".into()))
        );
        let (verb, version) = ctcp.answer("VERSION", "", now).unwrap();
        assert_eq!(verb, "VERSION");
        assert!(version.starts_with("Estuary "), "{version}");
        assert_eq!(
            ctcp.answer("CLIENTINFO", "", now).unwrap().1,
            "ACTION CLIENTINFO PING VERSION"
        );
        assert!(ctcp.answer("PING", "4", now).is_some());
        assert!(ctcp.answer("PING", "5", now).is_some());
        assert_eq!(ctcp.answer("PING", "6", now), None, "past the rate");
        assert!(ctcp.answer("PING", "7", now + WINDOW).is_some());
    }

    #[test]
    fn versions_split_into_name_and_version() {
        assert_eq!(
            software("HexChat 2.16.1 / Linux"),
            estuary_bridge::Software {
                name: "HexChat".into(),
                version: "2.16.1 / Linux".into()
            }
        );
        assert_eq!(software(" WeeChat ").name, "WeeChat");
        assert_eq!(software("WeeChat").version, "");
    }
}

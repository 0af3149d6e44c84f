//! What the gateway asks of a channel for itself, as opposed to what the
//! user types to the server's JID: its ban list (`MODE #chan +b`: 367
//! lines, ended by 368) for the MUC outcast list, and its modes (`MODE
//! #chan`: 324) for the MUC room configuration. Their replies are gathered
//! here and never shown as notices.

use estuary_bridge::BridgeError;
use tokio::sync::oneshot;

use crate::isupport::ChanModes;
use crate::modes::ModeChange;

/// One ban, as `367 me #chan mask [setter [time]]` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEntry {
    pub mask: String,
    pub set_by: Option<String>,
}

/// Whether `name` is a ban mask rather than a nick: no nick holds any of
/// these characters (RFC 2812 §2.3.1), and every mask holds one.
pub fn is_mask(name: &str) -> bool {
    !name.is_empty() && name.contains(['!', '@', '*', '?'])
}

pub type Reply<T> = oneshot::Sender<Result<T, BridgeError>>;
pub type BanListReply = Reply<Vec<BanEntry>>;
pub type ModesReply = Reply<ChannelModes>;

/// A channel's modes, as 324 gives them, with the server's CHANMODES that
/// tell what each is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelModes {
    pub set: Vec<ModeChange>,
    pub chanmodes: ChanModes,
}

/// Answers asked for and not yet ended, by case-folded channel; one query
/// on the wire answers everyone who asked meanwhile.
pub struct ChannelQueries<T> {
    pending: Vec<(String, T, Vec<Reply<T>>)>,
}

impl<T> Default for ChannelQueries<T> {
    fn default() -> Self {
        ChannelQueries {
            pending: Vec::new(),
        }
    }
}

impl<T: Clone + Default> ChannelQueries<T> {
    /// Wait for the answer about `folded`; true if it must be asked (it is
    /// not already on its way). A query everyone gave up waiting for is
    /// asked again: a server that never answers it must not hold up the
    /// next one for good.
    pub fn wait(&mut self, folded: String, reply: Reply<T>) -> bool {
        self.pending
            .retain(|(c, _, replies)| *c != folded || replies.iter().any(|r| !r.is_closed()));
        if let Some((_, _, replies)) = self.pending.iter_mut().find(|(c, ..)| *c == folded) {
            replies.push(reply);
            return false;
        }
        self.pending.push((folded, T::default(), vec![reply]));
        true
    }

    /// The answer being gathered about `folded`, if one was asked for here.
    pub fn gathering(&mut self, folded: &str) -> Option<&mut T> {
        self.pending
            .iter_mut()
            .find(|(c, ..)| c == folded)
            .map(|(_, answer, _)| answer)
    }

    /// The answer about `folded` ended, or was refused with `error`:
    /// whether it was asked for here.
    pub fn end(&mut self, folded: &str, error: Option<BridgeError>) -> bool {
        let Some(at) = self.pending.iter().position(|(c, ..)| c == folded) else {
            return false;
        };
        let (_, answer, replies) = self.pending.swap_remove(at);
        for reply in replies {
            let _ = reply.send(match &error {
                Some(e) => Err(e.clone()),
                None => Ok(answer.clone()),
            });
        }
        true
    }
}

/// The channel queries of one connection.
#[derive(Default)]
pub struct ChannelAnswers {
    pub bans: ChannelQueries<Vec<BanEntry>>,
    pub modes: ChannelQueries<ChannelModes>,
}

impl ChannelAnswers {
    /// A refusal (not in the channel, not an operator, no such channel)
    /// about `folded`: whether a query of the gateway's was waiting for it.
    pub fn refuse(&mut self, folded: &str, error: BridgeError) -> bool {
        let bans = self.bans.end(folded, Some(error.clone()));
        self.modes.end(folded, Some(error)) || bans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_told_from_nicks() {
        assert!(is_mask("*!*@evil.example"));
        assert!(is_mask("bob!*@*"));
        assert!(is_mask("b?b"));
        assert!(!is_mask("bob"));
        assert!(!is_mask("[away]`_^{|}"));
        assert!(!is_mask(""));
    }

    #[tokio::test]
    async fn one_query_answers_everyone_who_asked() {
        let mut bans = ChannelQueries::<Vec<BanEntry>>::default();
        let (first, first_rx) = oneshot::channel();
        let (second, second_rx) = oneshot::channel();
        assert!(bans.wait("#chan".into(), first));
        assert!(!bans.wait("#chan".into(), second));
        let entry = BanEntry {
            mask: "*!*@evil.example".into(),
            set_by: Some("op!o@host".into()),
        };
        bans.gathering("#chan").unwrap().push(entry.clone());
        assert!(bans.gathering("#other").is_none());
        assert!(bans.end("#chan", None));
        assert!(bans.gathering("#chan").is_none());
        assert_eq!(
            first_rx.await.unwrap().unwrap(),
            std::slice::from_ref(&entry)
        );
        assert_eq!(second_rx.await.unwrap().unwrap(), [entry]);
        assert!(!bans.end("#chan", None));
    }

    #[test]
    fn a_query_nobody_waits_for_any_more_is_asked_again() {
        let mut bans = ChannelQueries::<Vec<BanEntry>>::default();
        let (reply, rx) = oneshot::channel();
        assert!(bans.wait("#chan".into(), reply));
        drop(rx);
        let (reply, _rx) = oneshot::channel();
        assert!(bans.wait("#chan".into(), reply));
        let (reply, _rx2) = oneshot::channel();
        assert!(!bans.wait("#chan".into(), reply));
    }

    #[tokio::test]
    async fn a_refusal_reaches_whoever_asked() {
        let mut answers = ChannelAnswers::default();
        let (reply, rx) = oneshot::channel();
        answers.modes.wait("#chan".into(), reply);
        assert!(answers.refuse("#chan", BridgeError::Forbidden("not an op".into())));
        assert!(matches!(rx.await.unwrap(), Err(BridgeError::Forbidden(_))));
        assert!(!answers.refuse("#chan", BridgeError::Forbidden("again".into())));
    }
}

//! A channel's ban list (`MODE #chan +b`), asked by the gateway for the
//! user's MUC outcast list: its replies (367, ended by 368) are gathered
//! here and never shown as notices.

use estuary_bridge::BridgeError;
use tokio::sync::oneshot;

/// One ban, as `367 me #chan mask [setter [time]]` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEntry {
    pub mask: String,
    pub set_by: Option<String>,
}

pub type BanListReply = oneshot::Sender<Result<Vec<BanEntry>, BridgeError>>;

/// Whether `name` is a ban mask rather than a nick: no nick holds any of
/// these characters (RFC 2812 §2.3.1), and every mask holds one.
pub fn is_mask(name: &str) -> bool {
    !name.is_empty() && name.contains(['!', '@', '*', '?'])
}

/// The ban lists asked for and not yet ended, by case-folded channel.
#[derive(Default)]
pub struct BanQueries {
    pending: Vec<(String, Vec<BanEntry>, Vec<BanListReply>)>,
}

impl BanQueries {
    /// Wait for the ban list of `folded`; true if it must be asked (it is
    /// not already on its way).
    pub fn wait(&mut self, folded: String, reply: BanListReply) -> bool {
        if let Some((_, _, replies)) = self.pending.iter_mut().find(|(c, ..)| *c == folded) {
            replies.push(reply);
            return false;
        }
        self.pending.push((folded, Vec::new(), vec![reply]));
        true
    }

    /// A 367 line about `folded`: whether it was asked for here.
    pub fn entry(&mut self, folded: &str, mask: &str, set_by: Option<&str>) -> bool {
        let Some((_, entries, _)) = self.pending.iter_mut().find(|(c, ..)| c == folded) else {
            return false;
        };
        entries.push(BanEntry {
            mask: mask.to_owned(),
            set_by: set_by.filter(|s| !s.is_empty()).map(str::to_owned),
        });
        true
    }

    /// The list of `folded` ended (368), or was refused with `error`:
    /// whether it was asked for here.
    pub fn end(&mut self, folded: &str, error: Option<BridgeError>) -> bool {
        let Some(at) = self.pending.iter().position(|(c, ..)| c == folded) else {
            return false;
        };
        let (_, entries, replies) = self.pending.swap_remove(at);
        for reply in replies {
            let answer = match &error {
                Some(e) => Err(e.clone()),
                None => Ok(entries.clone()),
            };
            let _ = reply.send(answer);
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
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
        let mut bans = BanQueries::default();
        let (first, first_rx) = oneshot::channel();
        let (second, second_rx) = oneshot::channel();
        assert!(bans.wait("#chan".into(), first));
        assert!(!bans.wait("#chan".into(), second));
        assert!(bans.entry("#chan", "*!*@evil.example", Some("op!o@host")));
        assert!(!bans.entry("#other", "x!*@*", None));
        assert!(bans.end("#chan", None));
        assert!(bans.is_empty());
        let expected = vec![BanEntry {
            mask: "*!*@evil.example".into(),
            set_by: Some("op!o@host".into()),
        }];
        assert_eq!(first_rx.await.unwrap().unwrap(), expected);
        assert_eq!(second_rx.await.unwrap().unwrap(), expected);
        assert!(!bans.end("#chan", None));
    }

    #[tokio::test]
    async fn a_refusal_reaches_whoever_asked() {
        let mut bans = BanQueries::default();
        let (reply, rx) = oneshot::channel();
        bans.wait("#chan".into(), reply);
        assert!(bans.end("#chan", Some(BridgeError::Forbidden("not an op".into()))));
        assert!(matches!(rx.await.unwrap(), Err(BridgeError::Forbidden(_))));
    }
}

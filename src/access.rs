//! Who may use a gateway.

use xmpp_parsers::jid::{BareJid, Jid};

/// The `allowed` and `admins` lists of one gateway.
///
/// A sender is allowed when it is a user (it has a local part) of an allowed
/// domain, an allowed JID, or an admin. Servers and components, which have no
/// local part, are never users and are refused unless listed as a JID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    domains: Vec<String>,
    jids: Vec<BareJid>,
    admins: Vec<BareJid>,
}

impl AccessList {
    /// Build from configuration entries; entries that do not parse were
    /// already reported by the configuration check, and are skipped here.
    pub fn new(allowed: &[String], admins: &[String]) -> AccessList {
        let mut list = AccessList::default();
        for entry in allowed {
            match entry.parse::<BareJid>() {
                Ok(jid) if jid.node().is_some() => list.jids.push(jid),
                Ok(jid) => list.domains.push(jid.domain().as_str().to_owned()),
                Err(_) => {}
            }
        }
        list.admins = admins.iter().filter_map(|a| a.parse().ok()).collect();
        list
    }

    pub fn allows(&self, from: &Jid) -> bool {
        let bare = from.to_bare();
        if self.is_admin(from) || self.jids.contains(&bare) {
            return true;
        }
        bare.node().is_some() && self.domains.iter().any(|d| d == bare.domain().as_str())
    }

    pub fn is_admin(&self, from: &Jid) -> bool {
        self.admins.contains(&from.to_bare())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        s.parse().unwrap()
    }

    #[test]
    fn domains_jids_and_admins() {
        let list = AccessList::new(
            &["example.org".into(), "guest@other.net".into()],
            &["boss@elsewhere.com".into()],
        );
        assert!(list.allows(&jid("alice@example.org/phone")));
        assert!(list.allows(&jid("guest@other.net/pc")));
        assert!(list.allows(&jid("boss@elsewhere.com")));
        assert!(!list.allows(&jid("mallory@other.net")));
        assert!(!list.allows(&jid("example.org")), "a server is not a user");
        assert!(!list.allows(&jid("alice@sub.example.org")));
        assert!(list.is_admin(&jid("boss@elsewhere.com/x")));
        assert!(!list.is_admin(&jid("alice@example.org")));
    }
}

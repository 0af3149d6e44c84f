//! biboumi's addressing: `#chan%server`, `nick%server`, `server`; with a
//! fixed server the `%server` part is left out.

use estuary_bridge::{BridgeError, RemoteAddress};

/// A parsed remote address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrcAddress {
    /// Channel or nick; empty for the server itself.
    pub name: String,
    pub server: String,
}

impl IrcAddress {
    pub fn parse(address: &RemoteAddress, fixed: Option<&str>) -> Result<IrcAddress, BridgeError> {
        let s = address.as_str();
        match (s.split_once('%'), fixed) {
            (Some((name, server)), _) if !server.is_empty() => Ok(IrcAddress {
                name: name.to_owned(),
                server: server.to_owned(),
            }),
            (None, Some(server)) => Ok(IrcAddress {
                name: s.to_owned(),
                server: server.to_owned(),
            }),
            (None, None) if !s.is_empty() => Ok(IrcAddress {
                name: String::new(),
                server: s.to_owned(),
            }),
            _ => Err(BridgeError::BadRequest(format!(
                "'{s}' is not an IRC address"
            ))),
        }
    }

    /// The address of `name` (a channel or nick) on `server`.
    pub fn remote(name: &str, server: &str, fixed: Option<&str>) -> RemoteAddress {
        if fixed == Some(server) {
            RemoteAddress::new(name)
        } else {
            RemoteAddress::new(format!("{name}%{server}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways() {
        let a = IrcAddress::parse(&"#chan%irc.example".into(), None).unwrap();
        assert_eq!(
            (a.name.as_str(), a.server.as_str()),
            ("#chan", "irc.example")
        );
        assert_eq!(
            IrcAddress::remote("#chan", "irc.example", None).as_str(),
            "#chan%irc.example"
        );
        let fixed = IrcAddress::parse(&"nick".into(), Some("irc.example")).unwrap();
        assert_eq!(fixed.server, "irc.example");
        assert_eq!(
            IrcAddress::remote("nick", "irc.example", Some("irc.example")).as_str(),
            "nick"
        );
        let server = IrcAddress::parse(&"irc.example".into(), None).unwrap();
        assert!(server.name.is_empty());
    }
}

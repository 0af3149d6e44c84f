//! Room invitations: XEP-0045 mediated invitations (through the room) and
//! XEP-0249 direct invitations (sent to the person invited).

use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Lang, Message, MessageType};
use xmpp_parsers::minidom::Element;

use super::xml::{clean_text, element, text_element, Attrs, NS_MUC_USER};

pub const NS_CONFERENCE: &str = "jabber:x:conference";

/// An invitation a user sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invitation {
    /// Sent to a room: invite `to` into it.
    Mediated { to: Jid, reason: Option<String> },
    /// Sent to the person invited: come to `room`.
    Direct { room: Jid, reason: Option<String> },
}

/// The invitation a message carries, if any. An invitation whose JID does not
/// parse is `Err`, so that it is refused rather than sent on as a message.
pub fn parse(m: &Message) -> Option<Result<Invitation, String>> {
    for payload in &m.payloads {
        if payload.is("x", NS_MUC_USER) {
            let invite = payload.get_child("invite", NS_MUC_USER)?;
            let reason = invite
                .get_child("reason", NS_MUC_USER)
                .map(|r| r.text())
                .filter(|r| !r.is_empty());
            return Some(match invite.attr("to").map(str::parse::<Jid>) {
                Some(Ok(to)) => Ok(Invitation::Mediated { to, reason }),
                _ => Err("an invitation needs a valid 'to' JID".to_owned()),
            });
        }
        if payload.is("x", NS_CONFERENCE) {
            let reason = payload.attr("reason").map(str::to_owned);
            return Some(match payload.attr("jid").map(str::parse::<Jid>) {
                Some(Ok(room)) => Ok(Invitation::Direct { room, reason }),
                _ => Err("a direct invitation needs a valid room 'jid'".to_owned()),
            });
        }
    }
    None
}

/// A mediated invitation from `room` to `to`, from `inviter`. The body is for
/// clients that show no invitations.
pub fn mediated(room: Jid, to: Jid, inviter: &Jid, reason: Option<&str>) -> Message {
    let mut invite = element("invite", NS_MUC_USER).with("from", inviter.to_string());
    if let Some(reason) = reason {
        invite = invite.append(text_element(
            "reason",
            NS_MUC_USER,
            clean_text(reason).into_owned(),
        ));
    }
    let x: Element = element("x", NS_MUC_USER).append(invite.build()).build();
    let mut body = format!("{inviter} invites you to the room {room}");
    if let Some(reason) = reason {
        body.push_str(": ");
        body.push_str(&clean_text(reason));
    }
    let mut m = Message::new(Some(to));
    m.type_ = MessageType::Normal;
    m.from = Some(room);
    m.bodies.insert(Lang::new(), body);
    m.payloads.push(x);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::minidom::Element;

    fn message(xml: &str) -> Message {
        Message::try_from(xml.parse::<Element>().unwrap()).unwrap()
    }

    #[test]
    fn both_kinds_are_read_and_bad_jids_refused() {
        let m = message(
            "<message xmlns='jabber:component:accept' to='#c%s@gw'>\
             <x xmlns='http://jabber.org/protocol/muc#user'>\
             <invite to='bob%s@gw'><reason>hi</reason></invite></x></message>",
        );
        assert_eq!(
            parse(&m),
            Some(Ok(Invitation::Mediated {
                to: "bob%s@gw".parse().unwrap(),
                reason: Some("hi".into())
            }))
        );
        let m = message(
            "<message xmlns='jabber:component:accept' to='bob%s@gw'>\
             <x xmlns='jabber:x:conference' jid='#c%s@gw'/></message>",
        );
        assert_eq!(
            parse(&m),
            Some(Ok(Invitation::Direct {
                room: "#c%s@gw".parse().unwrap(),
                reason: None
            }))
        );
        let m = message(
            "<message xmlns='jabber:component:accept' to='#c%s@gw'>\
             <x xmlns='http://jabber.org/protocol/muc#user'><invite to='a@b@c'/></x></message>",
        );
        assert!(matches!(parse(&m), Some(Err(_))));
        let m = message(
            "<message xmlns='jabber:component:accept' to='#c%s@gw'><body>x</body></message>",
        );
        assert_eq!(parse(&m), None);
    }
}

//! Two users of a gateway in one room, as several bridges' tests need them:
//! the gateway hears of each message twice (the sender's echo and the other
//! user's copy), and both users must be shown it under one stanza-id, the
//! one MAM gives it, archived once.

use std::time::Duration;

use super::client::{attr, body, el, find_child, stanza_id, XmppClient};

const WAIT: Duration = Duration::from_secs(15);

/// One message of [`exchange`], with the stanza-id each side was shown.
#[derive(Debug)]
pub struct SharedMessage {
    pub text: String,
    /// In the sender's reflection.
    pub to_sender: String,
    /// In the other user's copy.
    pub to_other: String,
}

/// `a` and `b`, each a client and its nick, both in `room`, send `rounds`
/// groupchat messages each, in turn ("alice says 0", id "alice-0"), each
/// waiting for its reflection.
pub async fn exchange(
    room: &str,
    a: (&mut XmppClient, &str),
    b: (&mut XmppClient, &str),
    rounds: usize,
) -> Vec<SharedMessage> {
    let (a, a_nick) = a;
    let (b, b_nick) = b;
    let mut sent = Vec::new();
    for i in 0..rounds {
        for (client, nick, from_a) in [(&mut *a, a_nick, true), (&mut *b, b_nick, false)] {
            let text = format!("{nick} says {i}");
            let id = format!("{nick}-{i}");
            client
                .send(el(&format!(
                    "<message to='{room}' type='groupchat' id='{id}'><body>{text}</body></message>"
                )))
                .await;
            let reflection = client.expect(WAIT, |m| attr(m, "id") == id).await;
            sent.push((text, stanza_id(&reflection), from_a));
        }
    }
    let mut messages = Vec::new();
    for (text, to_sender, from_a) in sent {
        let other = if from_a { &mut *b } else { &mut *a };
        let shown = other
            .expect(WAIT, |m| body(m).as_deref() == Some(text.as_str()))
            .await;
        messages.push(SharedMessage {
            text,
            to_sender,
            to_other: stanza_id(&shown),
        });
    }
    messages
}

/// Each of `messages` is in `room`'s MAM archive once, under the stanza-id
/// both users were shown, so neither user's client shows it twice once it
/// reads the archive. Asks through `client`, which must have read every
/// message it waits for: a MAM query takes whatever stanzas come before its
/// answer.
pub async fn assert_archived_once_as_shown(
    client: &mut XmppClient,
    room: &str,
    messages: &[SharedMessage],
) {
    let (results, reply) = client.mam_query(room, "", "").await;
    assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
    for m in messages {
        assert_eq!(
            m.to_other, m.to_sender,
            "the stanza-id of '{}' shown to the other user, and to its sender",
            m.text
        );
        let archived: Vec<&str> = results
            .iter()
            .filter(|r| {
                find_child(r, "forwarded", "urn:xmpp:forward:0")
                    .and_then(|f| find_child(f, "message", "jabber:client"))
                    .and_then(body)
                    .as_deref()
                    == Some(m.text.as_str())
            })
            .map(|r| attr(r, "id"))
            .collect();
        assert_eq!(archived, [m.to_sender.as_str()], "'{}' in MAM", m.text);
    }
}

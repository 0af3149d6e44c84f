//! Error replies: every stanza the gateway cannot serve gets one, never silence.

use std::collections::BTreeMap;

use estuary_bridge::BridgeError;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// One error condition plus its human text.
#[derive(Debug, Clone)]
pub struct Failure {
    pub type_: ErrorType,
    pub condition: DefinedCondition,
    pub text: String,
}

impl Failure {
    pub fn new(type_: ErrorType, condition: DefinedCondition, text: impl Into<String>) -> Self {
        Failure {
            type_,
            condition,
            text: text.into(),
        }
    }

    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Modify, DefinedCondition::BadRequest, text)
    }
    pub fn forbidden(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Auth, DefinedCondition::Forbidden, text)
    }
    pub fn item_not_found(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Cancel, DefinedCondition::ItemNotFound, text)
    }
    pub fn jid_malformed(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Modify, DefinedCondition::JidMalformed, text)
    }
    pub fn not_acceptable(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Modify, DefinedCondition::NotAcceptable, text)
    }
    pub fn not_allowed(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Cancel, DefinedCondition::NotAllowed, text)
    }
    pub fn not_implemented(text: impl Into<String>) -> Self {
        Self::new(
            ErrorType::Cancel,
            DefinedCondition::FeatureNotImplemented,
            text,
        )
    }
    pub fn registration_required(text: impl Into<String>) -> Self {
        Self::new(
            ErrorType::Auth,
            DefinedCondition::RegistrationRequired,
            text,
        )
    }
    pub fn service_unavailable(text: impl Into<String>) -> Self {
        Self::new(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            text,
        )
    }
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Wait, DefinedCondition::InternalServerError, text)
    }
    pub fn not_authorized(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Auth, DefinedCondition::NotAuthorized, text)
    }
    pub fn policy_violation(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Modify, DefinedCondition::PolicyViolation, text)
    }
    pub fn conflict(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Cancel, DefinedCondition::Conflict, text)
    }

    pub fn to_stanza_error(&self, by: Option<Jid>) -> StanzaError {
        let mut texts = BTreeMap::new();
        if !self.text.is_empty() {
            texts.insert(String::new(), self.text.clone());
        }
        StanzaError {
            type_: self.type_.clone(),
            by,
            defined_condition: self.condition.clone(),
            texts,
            other: None,
        }
    }
}

impl From<BridgeError> for Failure {
    fn from(e: BridgeError) -> Self {
        let text = e.to_string();
        match e {
            BridgeError::Unsupported(_) => Failure::not_implemented(text),
            BridgeError::NotFound(_) => Failure::item_not_found(text),
            BridgeError::Forbidden(_) => Failure::forbidden(text),
            BridgeError::BadRequest(_) => Failure::bad_request(text),
            BridgeError::Auth(_) => Failure::not_authorized(text),
            BridgeError::Unavailable(_) => {
                Failure::new(ErrorType::Wait, DefinedCondition::RemoteServerTimeout, text)
            }
            BridgeError::Other(_) => Failure::internal(text),
        }
    }
}

/// The error reply to a stanza, from whom it was addressed to. `None` for
/// stanzas that must never be answered with an error (errors themselves, and
/// iq results), which is how error loops are avoided.
pub fn reply(stanza: &Stanza, failure: &Failure) -> Option<Stanza> {
    match stanza {
        Stanza::Iq(iq) => iq_error(iq, failure).map(Stanza::Iq),
        Stanza::Message(m) => {
            if m.type_ == MessageType::Error {
                return None;
            }
            let mut reply = Message::new(m.from.clone());
            reply.type_ = MessageType::Error;
            reply.from = m.to.clone();
            reply.id = m.id.clone();
            reply.payloads = vec![Element::from(failure.to_stanza_error(None))];
            Some(Stanza::Message(reply))
        }
        Stanza::Presence(p) => {
            if p.type_ == PresenceType::Error {
                return None;
            }
            let mut reply = Presence::new(PresenceType::Error);
            reply.from = p.to.clone();
            reply.to = p.from.clone();
            reply.id = p.id.clone();
            reply.payloads = vec![Element::from(failure.to_stanza_error(None))];
            Some(Stanza::Presence(reply))
        }
    }
}

fn iq_error(iq: &Iq, failure: &Failure) -> Option<Iq> {
    let (from, to, id) = match iq {
        Iq::Get { from, to, id, .. } | Iq::Set { from, to, id, .. } => (from, to, id),
        Iq::Result { .. } | Iq::Error { .. } => return None,
    };
    Some(Iq::Error {
        from: to.clone(),
        to: from.clone(),
        id: id.clone(),
        error: failure.to_stanza_error(None),
        payload: None,
    })
}

/// The error reply to an element that did not even parse as a stanza,
/// built from the attributes that could be read.
pub fn reply_to_invalid(
    kind: &str,
    from: Option<&str>,
    to: Option<&str>,
    id: Option<&str>,
    type_: Option<&str>,
    failure: &Failure,
) -> Option<Stanza> {
    if type_ == Some("error") || (kind == "iq" && type_ == Some("result")) {
        return None;
    }
    let sender: Jid = from?.parse().ok()?;
    let recipient: Option<Jid> = to.and_then(|t| t.parse().ok());
    let error = failure.to_stanza_error(None);
    match kind {
        "iq" => Some(Stanza::Iq(Iq::Error {
            from: recipient,
            to: Some(sender),
            id: id.unwrap_or_default().to_owned(),
            error,
            payload: None,
        })),
        "message" => {
            let mut m = Message::new(Some(sender));
            m.type_ = MessageType::Error;
            m.from = recipient;
            m.id = id.map(|i| xmpp_parsers::message::Id(i.to_owned()));
            m.payloads = vec![Element::from(error)];
            Some(Stanza::Message(m))
        }
        _ => {
            let mut p = Presence::new(PresenceType::Error);
            p.from = recipient;
            p.to = Some(sender);
            p.id = id.map(str::to_owned);
            p.payloads = vec![Element::from(error)];
            Some(Stanza::Presence(p))
        }
    }
}

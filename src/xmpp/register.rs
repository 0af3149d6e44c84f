//! XEP-0077 in-band registration: the query the user sees and what they send.

use std::collections::BTreeMap;

use estuary_bridge::{NetworkInfo, RegistrationField};
use xmpp_parsers::minidom::Element;

use super::errors::Failure;
use super::forms::{registration_form, submitted_values, MAX_FORM_BYTES};
use super::xml::{element, NS_DATA, NS_REGISTER};

/// What a `set` on `jabber:iq:register` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterRequest {
    Remove,
    Submit(BTreeMap<String, String>),
}

/// The answer to a `get`: instructions, the form, and `<registered/>` when the user is.
pub fn query(
    info: &NetworkInfo,
    fields: &[RegistrationField],
    current: Option<&BTreeMap<String, String>>,
) -> Element {
    let empty = BTreeMap::new();
    let mut q = element("query", NS_REGISTER)
        .append(element("instructions", NS_REGISTER).append(info.instructions.clone()));
    if current.is_some() {
        q = q.append(element("registered", NS_REGISTER));
    }
    q.append(registration_form(
        NS_REGISTER,
        &info.name,
        &info.instructions,
        fields,
        current.unwrap_or(&empty),
    ))
    .build()
}

/// Read a `set`: a removal, a submitted data form, or the legacy plain fields.
pub fn parse(query: &Element) -> Result<RegisterRequest, Failure> {
    if query.has_child("remove", NS_REGISTER) {
        return Ok(RegisterRequest::Remove);
    }
    if let Some(form) = query.get_child("x", NS_DATA) {
        return submitted_values(form).map(RegisterRequest::Submit);
    }
    // Legacy registration: each field is a child element named after it.
    let mut values = BTreeMap::new();
    let mut total = 0;
    for child in query.children() {
        let text = child.text();
        total += text.len();
        if total > MAX_FORM_BYTES {
            return Err(Failure::policy_violation("the registration is too large"));
        }
        values.insert(child.name().to_owned(), text);
    }
    if values.is_empty() {
        return Err(Failure::bad_request("the registration carries no fields"));
    }
    Ok(RegisterRequest::Submit(values))
}

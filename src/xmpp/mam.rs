//! XEP-0313 Message Archive Management on room JIDs: the query (data form
//! filters and XEP-0059 result set paging) and the stanzas of the answer.
//! xmpp-parsers' MAM types are built for user archives and clients; rooms
//! served by a component need only this much, so it is done by hand.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;

use super::errors::Failure;
use super::forms;
use super::message::delay;
use super::rsm::{MAX_PAGE, NS_RSM};
use super::xml::{clean_text, element, text_element, Attrs, NS_DATA};
use crate::archive::{Page, PageRequest};
use crate::store::ArchivedMessage;

pub const NS_MAM: &str = "urn:xmpp:mam:2";
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_CLIENT: &str = "jabber:client";

/// An archive query, or a request for its form: `<query xmlns='urn:xmpp:mam:2'>`.
pub fn is_query(iq: &Iq) -> bool {
    match iq {
        Iq::Get { payload, .. } | Iq::Set { payload, .. } => payload.is("query", NS_MAM),
        Iq::Result { .. } | Iq::Error { .. } => false,
    }
}

/// A parsed query: the client's id for it, and what it asks of the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MamQuery {
    pub queryid: Option<String>,
    pub page: PageRequest,
}

/// Parse `<query xmlns='urn:xmpp:mam:2'>` with its optional form and `<set/>`.
pub fn parse(query: &Element) -> Result<MamQuery, Failure> {
    // Largest page served, whatever `<max>` asks; also the default.
    let mut page = PageRequest {
        max: MAX_PAGE,
        ..PageRequest::default()
    };
    if let Some(form) = query.get_child("x", NS_DATA) {
        for (var, value) in forms::submitted_values(form)? {
            match var.as_str() {
                "FORM_TYPE" if value == NS_MAM => {}
                "FORM_TYPE" => {
                    return Err(Failure::bad_request(format!(
                        "the form must be of type {NS_MAM}"
                    )))
                }
                "start" => page.start_ms = Some(timestamp(&value)?),
                "end" => page.end_ms = Some(timestamp(&value)?),
                "with" => page.nick = Some(with_nick(&value)?),
                other => {
                    return Err(Failure::bad_request(format!(
                        "the filter '{other}' is not supported"
                    )))
                }
            }
        }
    }
    if let Some(set) = query.get_child("set", NS_RSM) {
        if let Some(max) = set.get_child("max", NS_RSM) {
            let max: usize = max
                .text()
                .trim()
                .parse()
                .map_err(|_| Failure::bad_request("<max/> must be a number"))?;
            page.max = max.min(MAX_PAGE);
        }
        if set.get_child("index", NS_RSM).is_some() {
            return Err(Failure::not_implemented(
                "paging by <index/> is not supported; use <after/> or <before/>",
            ));
        }
        page.after = set
            .get_child("after", NS_RSM)
            .map(|a| a.text().trim().to_owned());
        page.before = set.get_child("before", NS_RSM).map(|b| {
            let id = b.text().trim().to_owned();
            (!id.is_empty()).then_some(id)
        });
        if page.after.as_deref() == Some("") {
            return Err(Failure::bad_request("<after/> needs an id"));
        }
    }
    Ok(MamQuery {
        queryid: query.attr("queryid").map(str::to_owned),
        page,
    })
}

/// A XEP-0082 date-time, as Unix milliseconds.
pub fn parse_timestamp(value: &str) -> Option<i64> {
    value
        .trim()
        .parse::<xmpp_parsers::date::DateTime>()
        .ok()
        .map(|d| d.0.timestamp_millis())
}

fn timestamp(value: &str) -> Result<i64, Failure> {
    parse_timestamp(value)
        .ok_or_else(|| Failure::bad_request(format!("'{value}' is not a XEP-0082 date-time")))
}

/// In a room's archive `with` can only name an occupant: `room@gw/nick`.
fn with_nick(value: &str) -> Result<String, Failure> {
    let jid: Jid = value
        .parse()
        .map_err(|_| Failure::jid_malformed(format!("'{value}' is not a JID")))?;
    jid.resource()
        .map(|r| r.as_str().to_owned())
        .ok_or_else(|| Failure::not_implemented("in a room, 'with' must be an occupant JID"))
}

/// The answer to an iq get: the filters this archive understands.
pub fn form() -> Element {
    let field = |var: &str, type_: &str| {
        element("field", NS_DATA)
            .with("var", var)
            .with("type", type_)
    };
    element("query", NS_MAM)
        .append(
            element("x", NS_DATA)
                .with("type", "form")
                .append(field("FORM_TYPE", "hidden").append(text_element("value", NS_DATA, NS_MAM)))
                .append(field("with", "jid-single"))
                .append(field("start", "text-single"))
                .append(field("end", "text-single")),
        )
        .build()
}

/// One result: an archived message forwarded to the one who asked.
pub fn result(
    to: Jid,
    room: &Jid,
    occupant: Jid,
    queryid: Option<&str>,
    m: &ArchivedMessage,
) -> Message {
    let original = element("message", NS_CLIENT)
        .with("type", "groupchat")
        .with("from", occupant.to_string())
        .with("id", m.stanza_id.clone())
        .append(text_element(
            "body",
            NS_CLIENT,
            clean_text(&m.body).into_owned(),
        ))
        .build();
    let forwarded = element("forwarded", NS_FORWARD)
        .append(delay(room, m.ts_ms))
        .append(original);
    let result = element("result", NS_MAM)
        .with_opt("queryid", queryid)
        .with("id", m.stanza_id.clone())
        .append(forwarded)
        .build();
    let mut message = Message::new(Some(to));
    message.from = Some(room.clone());
    message.payloads.push(result);
    message
}

/// The iq result's payload, after the last result: where the page stands.
pub fn fin(page: &Page) -> Element {
    let mut set = element("set", NS_RSM);
    if let (Some(first), Some(last)) = (page.messages.first(), page.messages.last()) {
        set = set
            .append(text_element("first", NS_RSM, first.stanza_id.clone()))
            .append(text_element("last", NS_RSM, last.stanza_id.clone()));
    }
    set = set.append(text_element("count", NS_RSM, page.count.to_string()));
    element("fin", NS_MAM)
        .with("complete", if page.complete { "true" } else { "false" })
        .append(set)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(xml: &str) -> Result<MamQuery, Failure> {
        let el: Element = xml.parse().expect("valid XML");
        parse(&el)
    }

    #[test]
    fn filters_and_paging_are_read() {
        let q = query(
            "<query xmlns='urn:xmpp:mam:2' queryid='q1'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
             <field var='with'><value>#room@gw.localhost/bob</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>500</max><before/></set></query>",
        )
        .unwrap();
        assert_eq!(q.queryid.as_deref(), Some("q1"));
        assert_eq!(q.page.start_ms, Some(1_275_868_800_000));
        assert_eq!(q.page.nick.as_deref(), Some("bob"));
        assert_eq!(q.page.max, MAX_PAGE);
        assert_eq!(q.page.before, Some(None));
        assert_eq!(q.page.after, None);
    }

    #[test]
    fn bad_queries_are_refused() {
        for bad in [
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>x</max></set></query>",
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
             <field var='start'><value>yesterday</value></field></x></query>",
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
             <field var='ids'><value>a</value></field></x></query>",
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set></query>",
        ] {
            assert!(query(bad).is_err(), "{bad}");
        }
    }
}

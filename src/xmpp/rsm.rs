//! XEP-0059 result set management: paging long lists such as channel lists.

use xmpp_parsers::minidom::Element;

use super::xml::{element, Attrs};

pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";

/// Largest page served, whatever the client asks.
pub const MAX_PAGE: usize = 100;

/// A client's paging request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub max: Option<usize>,
    pub after: Option<String>,
    pub before: Option<String>,
}

impl Request {
    pub fn parse(parent: &Element) -> Request {
        let Some(set) = parent.get_child("set", NS_RSM) else {
            return Request::default();
        };
        let text = |name: &str| set.get_child(name, NS_RSM).map(Element::text);
        Request {
            max: text("max").and_then(|m| m.trim().parse().ok()),
            after: text("after"),
            before: text("before"),
        }
    }

    /// The page of `keys` to serve: its range and whether paging was asked.
    pub fn page(&self, keys: &[String]) -> std::ops::Range<usize> {
        let max = self.max.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let start = match &self.after {
            Some(after) => keys
                .iter()
                .position(|k| k == after)
                .map_or(keys.len(), |i| i + 1),
            None => 0,
        };
        match &self.before {
            Some(before) => {
                let end = if before.is_empty() {
                    keys.len()
                } else {
                    keys.iter().position(|k| k == before).unwrap_or(keys.len())
                };
                end.saturating_sub(max).max(start)..end
            }
            None => start..(start + max).min(keys.len()),
        }
    }
}

/// The `<set/>` describing a served page.
pub fn answer(keys: &[String], range: std::ops::Range<usize>) -> Element {
    let mut set = element("set", NS_RSM);
    if !range.is_empty() {
        set = set
            .append(
                element("first", NS_RSM)
                    .with("index", range.start.to_string())
                    .append(keys[range.start].clone()),
            )
            .append(element("last", NS_RSM).append(keys[range.end - 1].clone()));
    }
    set.append(element("count", NS_RSM).append(keys.len().to_string()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i}")).collect()
    }

    #[test]
    fn pages_forward_and_backward() {
        let k = keys(25);
        let first = Request {
            max: Some(10),
            ..Request::default()
        };
        assert_eq!(first.page(&k), 0..10);
        let next = Request {
            max: Some(10),
            after: Some("k9".into()),
            ..Request::default()
        };
        assert_eq!(next.page(&k), 10..20);
        let last = Request {
            max: Some(10),
            before: Some(String::new()),
            ..Request::default()
        };
        assert_eq!(last.page(&k), 15..25);
        let before = Request {
            max: Some(10),
            before: Some("k15".into()),
            ..Request::default()
        };
        assert_eq!(before.page(&k), 5..15);
        assert_eq!(Request::default().page(&k), 0..25);
    }
}

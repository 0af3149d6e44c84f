//! XEP-0106 JID escaping, both ways.
//!
//! Written by hand because xmpp-parsers and jid do not provide it; it is a
//! fixed table of ten characters.

use thiserror::Error;

/// The characters XEP-0106 escapes, with their escape codes.
const TABLE: [(char, &str); 10] = [
    (' ', "20"),
    ('"', "22"),
    ('&', "26"),
    ('\'', "27"),
    ('/', "2f"),
    (':', "3a"),
    ('<', "3c"),
    ('>', "3e"),
    ('@', "40"),
    ('\\', "5c"),
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EscapeError {
    #[error("a JID local part cannot start or end with a space")]
    EdgeSpace,
    #[error("the escaped local part is empty")]
    Empty,
    #[error("'{0}' is not a valid escaped JID local part")]
    Invalid(String),
}

/// Escape a remote name into a JID local part.
pub fn escape(name: &str) -> Result<String, EscapeError> {
    if name.is_empty() {
        return Err(EscapeError::Empty);
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(EscapeError::EdgeSpace);
    }
    let mut out = String::with_capacity(name.len());
    let bytes = name.as_bytes();
    for (i, c) in name.char_indices() {
        if c == '\\' {
            // A backslash is escaped only where it would otherwise read as an escape.
            if is_escape_at(bytes, i) {
                out.push_str("\\5c");
            } else {
                out.push(c);
            }
        } else if let Some((_, code)) = TABLE.iter().find(|(ch, _)| *ch == c) {
            out.push('\\');
            out.push_str(code);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Turn a JID local part back into the remote name.
///
/// Only the ten sequences of the table are escapes; any other backslash is
/// kept as it is, as XEP-0106 says. A local part that decodes to a character
/// a JID forbids unescaped, yet contains that character raw, is invalid.
pub fn unescape(local: &str) -> Result<String, EscapeError> {
    if local.is_empty() {
        return Err(EscapeError::Empty);
    }
    if local
        .chars()
        .any(|c| matches!(c, ' ' | '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@'))
    {
        return Err(EscapeError::Invalid(local.to_owned()));
    }
    let bytes = local.as_bytes();
    let mut out = String::with_capacity(local.len());
    let mut i = 0;
    while i < local.len() {
        if bytes[i] == b'\\' {
            if let Some(c) = escape_at(bytes, i) {
                out.push(c);
                i += 3;
                continue;
            }
        }
        let c = local[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    if out.starts_with(' ') || out.ends_with(' ') {
        return Err(EscapeError::EdgeSpace);
    }
    Ok(out)
}

fn escape_at(bytes: &[u8], i: usize) -> Option<char> {
    let code = bytes.get(i + 1..i + 3)?;
    let code = std::str::from_utf8(code).ok()?.to_ascii_lowercase();
    TABLE.iter().find(|(_, c)| *c == code).map(|(ch, _)| *ch)
}

fn is_escape_at(bytes: &[u8], i: usize) -> bool {
    escape_at(bytes, i).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_xep() {
        assert_eq!(escape("space cadet").unwrap(), "space\\20cadet");
        assert_eq!(
            escape("call me \"ishmael\"").unwrap(),
            "call\\20me\\20\\22ishmael\\22"
        );
        assert_eq!(escape("at&t guy").unwrap(), "at\\26t\\20guy");
        assert_eq!(escape("d'artagnan").unwrap(), "d\\27artagnan");
        assert_eq!(escape("/.fanboy").unwrap(), "\\2f.fanboy");
        assert_eq!(escape("::foo::").unwrap(), "\\3a\\3afoo\\3a\\3a");
        assert_eq!(escape("<foo>").unwrap(), "\\3cfoo\\3e");
        assert_eq!(escape("user@host").unwrap(), "user\\40host");
        assert_eq!(escape("c:\\net").unwrap(), "c\\3a\\net");
        assert_eq!(escape("c:\\cool stuff").unwrap(), "c\\3a\\cool\\20stuff");
        assert_eq!(escape("c:\\5commas").unwrap(), "c\\3a\\5c5commas");
    }

    #[test]
    fn round_trips() {
        for name in [
            "#chan%irc.libera.chat",
            "a b@c/d",
            "\\5c",
            "ünïcødé",
            "x\\y",
        ] {
            assert_eq!(unescape(&escape(name).unwrap()).unwrap(), name);
        }
    }

    #[test]
    fn unknown_backslash_sequences_stay() {
        assert_eq!(unescape("foo\\bar").unwrap(), "foo\\bar");
        assert_eq!(unescape("\\3A").unwrap(), ":");
    }

    #[test]
    fn invalid_inputs() {
        assert_eq!(escape(" lead"), Err(EscapeError::EdgeSpace));
        assert_eq!(unescape("\\20lead"), Err(EscapeError::EdgeSpace));
        assert!(matches!(unescape("a b"), Err(EscapeError::Invalid(_))));
        assert_eq!(unescape(""), Err(EscapeError::Empty));
    }
}

//! One IRC protocol line: tags, source, command and parameters.
//!
//! Incoming lines are parsed here by hand rather than with `irc-proto`'s
//! `Message`: that type decodes MODE with fixed mode tables instead of the
//! server's CHANMODES and refuses the whole line when it meets a mode it does
//! not know, and it decides what a channel is without CHANTYPES. The bridge
//! needs the raw view (command plus parameters) and interprets it with the
//! server's ISUPPORT. Outgoing lines are built with `irc-proto`, which knows
//! the trailing-parameter and tag-escaping rules.

use std::collections::BTreeMap;

/// A parsed line. Parameters include the trailing one, without its colon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrcLine {
    pub tags: BTreeMap<String, String>,
    /// `nick!user@host` or a server name.
    pub source: Option<String>,
    /// Upper-cased command or three-digit numeric.
    pub command: String,
    pub params: Vec<String>,
}

impl IrcLine {
    /// Parse a line without its CR LF. `None` for an empty or commandless line.
    pub fn parse(line: &str) -> Option<IrcLine> {
        let mut rest = line.trim_end_matches(['\r', '\n']);
        let mut tags = BTreeMap::new();
        if let Some(stripped) = rest.strip_prefix('@') {
            let (raw, after) = stripped.split_once(' ')?;
            for tag in raw.split(';').filter(|t| !t.is_empty()) {
                let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
                tags.insert(key.to_owned(), unescape_tag(value));
            }
            rest = after.trim_start_matches(' ');
        }
        let mut source = None;
        if let Some(stripped) = rest.strip_prefix(':') {
            let (src, after) = stripped.split_once(' ')?;
            source = Some(src.to_owned());
            rest = after.trim_start_matches(' ');
        }
        let (command, mut rest) = match rest.split_once(' ') {
            Some((c, r)) => (c, r),
            None => (rest, ""),
        };
        if command.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing.to_owned());
                break;
            }
            match rest.split_once(' ') {
                Some((p, r)) => {
                    params.push(p.to_owned());
                    rest = r;
                }
                None => {
                    params.push(rest.to_owned());
                    break;
                }
            }
        }
        Some(IrcLine {
            tags,
            source,
            command: command.to_ascii_uppercase(),
            params,
        })
    }

    /// The nick part of the source, if the source is a user.
    pub fn nick(&self) -> Option<&str> {
        let source = self.source.as_deref()?;
        Some(source.split(['!', '@']).next().unwrap_or(source))
    }

    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }
}

fn unescape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Build an outgoing line from a command and its parameters, CR LF included.
///
/// Parameters must already be free of CR, LF and NUL (the text module
/// guarantees it for user text); anything else would be a second command, so
/// such a parameter is refused here as a last line of defence. So is a
/// parameter before the last that would split into several or become the
/// trailing one (a space, a leading colon, or empty).
pub fn format(command: &str, params: &[&str]) -> Option<String> {
    format_tagged(&[], command, params)
}

/// [`format`], with IRCv3 message tags (`+typing=active`); their values are
/// escaped, and a tag name that is not one is refused.
pub fn format_tagged(tags: &[(&str, &str)], command: &str, params: &[&str]) -> Option<String> {
    if tags.iter().any(|(name, _)| {
        name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-/.".contains(&b))
    }) {
        return None;
    }
    let values = tags.iter().map(|(_, value)| value);
    if params
        .iter()
        .chain(values)
        .any(|p| p.contains(['\r', '\n', '\0']))
    {
        return None;
    }
    if let Some((_, middle)) = params.split_last() {
        if middle
            .iter()
            .any(|p| p.is_empty() || p.contains(' ') || p.starts_with(':'))
        {
            return None;
        }
    }
    if command.is_empty() || !command.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    // `Command::Raw`, not `Message::new`: the latter parses the command into
    // irc-proto's typed form and prints that, and irc-proto 1.1.0 parses
    // ISON as USERHOST. Raw prints what it is given.
    let tags = (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(name, value)| {
                irc_proto::message::Tag((*name).to_owned(), Some((*value).to_owned()))
            })
            .collect()
    });
    let message = irc_proto::Message {
        tags,
        prefix: None,
        command: irc_proto::Command::Raw(
            command.to_owned(),
            params.iter().map(|p| (*p).to_owned()).collect(),
        ),
    };
    Some(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_source_and_params() {
        let line = IrcLine::parse(
            "@time=2024-01-02T03:04:05.678Z;msgid=abc\\sdef :nick!user@host PRIVMSG #chan :hello world",
        )
        .unwrap();
        assert_eq!(line.tags["time"], "2024-01-02T03:04:05.678Z");
        assert_eq!(line.tags["msgid"], "abc def");
        assert_eq!(line.nick(), Some("nick"));
        assert_eq!(line.command, "PRIVMSG");
        assert_eq!(line.params, ["#chan", "hello world"]);
    }

    #[test]
    fn parses_numerics_and_modes_it_does_not_know() {
        let line = IrcLine::parse(":irc.example 353 me = #chan :@op +voice plain").unwrap();
        assert_eq!(line.command, "353");
        assert_eq!(line.params, ["me", "=", "#chan", "@op +voice plain"]);
        let mode = IrcLine::parse(":op!u@h MODE #chan +qZ founder").unwrap();
        assert_eq!(mode.params, ["#chan", "+qZ", "founder"]);
        assert_eq!(IrcLine::parse("PING :token").unwrap().params, ["token"]);
        assert!(IrcLine::parse("").is_none());
    }

    #[test]
    fn formatting_refuses_injection() {
        assert_eq!(
            format("PRIVMSG", &["#chan", "hello world"]).as_deref(),
            Some("PRIVMSG #chan :hello world\r\n")
        );
        assert_eq!(format("PRIVMSG", &["#chan", "x\r\nQUIT"]), None);
        assert_eq!(format("PRIVMSG", &["#chan", "nul\0"]), None);
        // A parameter before the last cannot split or end the line.
        assert_eq!(format("KICK", &["#a b", "nick"]), None);
        assert_eq!(format("KICK", &["#chan", ":nick", "why"]), None);
        assert_eq!(format("KICK", &["", "nick"]), None);
        assert_eq!(format("PRIV MSG", &["x"]), None);
    }

    #[test]
    fn commands_are_sent_as_given() {
        // irc-proto 1.1.0 would print a parsed ISON as USERHOST.
        assert_eq!(
            format("ISON", &["bob", "carol"]).as_deref(),
            Some("ISON bob carol\r\n")
        );
        assert_eq!(
            format("USER", &["alice", "0", "*", "Alice A"]).as_deref(),
            Some("USER alice 0 * :Alice A\r\n")
        );
        assert_eq!(
            format("MODE", &["#c", "+o", "bob"]).as_deref(),
            Some("MODE #c +o bob\r\n")
        );
        assert_eq!(format("LIST", &[]).as_deref(), Some("LIST\r\n"));
    }

    #[test]
    fn tags_are_escaped_and_checked() {
        assert_eq!(
            format_tagged(&[("+typing", "active")], "TAGMSG", &["#c"]).as_deref(),
            Some("@+typing=active TAGMSG #c\r\n")
        );
        assert_eq!(
            format_tagged(&[("+x", "a b;c")], "TAGMSG", &["#c"]).as_deref(),
            Some("@+x=a\\sb\\:c TAGMSG #c\r\n")
        );
        assert_eq!(format_tagged(&[("+a b", "x")], "TAGMSG", &["#c"]), None);
        assert_eq!(
            format_tagged(&[("+x", "a\r\nQUIT")], "TAGMSG", &["#c"]),
            None
        );
    }
}

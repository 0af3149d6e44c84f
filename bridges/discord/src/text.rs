//! Message text between XMPP and Discord: the 2,000-character limit, and
//! mentions (`<@id>` on Discord, `@nick` on XMPP).

/// Discord's limit on a message's content, in characters (Unicode scalar values).
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// Cut `text` into pieces of at most `limit` characters, preferring to cut
/// after a line break, then after a space; no character is lost or changed,
/// so the pieces concatenated give back `text`.
pub fn split(text: &str, limit: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.chars().count() > limit {
        // Byte offset just past the `limit`-th character.
        let hard = rest
            .char_indices()
            .nth(limit)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let window = &rest[..hard];
        let cut = window
            .rfind('\n')
            .or_else(|| window.rfind(' '))
            .map(|i| i + 1)
            .filter(|i| *i > 0)
            .unwrap_or(hard);
        pieces.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

/// A mention in Discord's markup, found in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mention {
    User(u64),
    Channel(u64),
    Role(u64),
}

/// Replace Discord mentions (`<@id>`, `<@!id>`, `<#id>`, `<@&id>`) with
/// what `name` gives for them; mentions it has no name for stay as they are.
pub fn render_mentions(text: &str, name: impl Fn(Mention) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let parsed = candidate.find('>').and_then(|end| {
            let inner = &candidate[1..end];
            let mention = if let Some(id) = inner.strip_prefix("@&") {
                Mention::Role(id.parse().ok()?)
            } else if let Some(id) = inner.strip_prefix("@!") {
                Mention::User(id.parse().ok()?)
            } else if let Some(id) = inner.strip_prefix('@') {
                Mention::User(id.parse().ok()?)
            } else if let Some(id) = inner.strip_prefix('#') {
                Mention::Channel(id.parse().ok()?)
            } else {
                return None;
            };
            Some((mention, end))
        });
        match parsed.and_then(|(mention, end)| name(mention).map(|n| (n, end))) {
            Some((rendered, end)) => {
                out.push_str(&rendered);
                rest = &candidate[end + 1..];
            }
            None => {
                out.push('<');
                rest = &candidate[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Turn `@Display Name` into `<@id>` for the members given as (display
/// name, id), longest names first so that `@Bob Smith` wins over `@Bob`.
pub fn encode_mentions(text: &str, members: &[(String, u64)]) -> String {
    let mut by_length: Vec<&(String, u64)> =
        members.iter().filter(|(n, _)| !n.is_empty()).collect();
    by_length.sort_by_key(|(name, _)| std::cmp::Reverse(name.chars().count()));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        // Only at a word start, so that e-mail addresses stay as they are.
        let word_start = out.chars().last().is_none_or(|c| !c.is_alphanumeric());
        let hit = by_length.iter().find(|(name, _)| {
            after.starts_with(name.as_str())
                && after[name.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric())
        });
        match hit {
            Some((name, id)) if word_start => {
                out.push_str(&format!("<@{id}>"));
                rest = &after[name.len()..];
            }
            _ => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(split("hello", 2000), vec!["hello"]);
        assert_eq!(split("", 2000), vec![""]);
    }

    #[test]
    fn long_text_is_cut_at_spaces_and_nothing_is_lost() {
        let words: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
        let text = words.join(" ");
        let pieces = split(&text, 2000);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.chars().count() <= 2000));
        assert_eq!(pieces.concat(), text);
        assert!(pieces[0].ends_with(' '));
    }

    #[test]
    fn unbroken_text_is_cut_at_characters_not_bytes() {
        let text = "é".repeat(4500);
        let pieces = split(&text, 2000);
        assert_eq!(
            pieces.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            vec![2000, 2000, 500]
        );
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn line_breaks_are_preferred() {
        let text = format!("{}\n{}", "a ".repeat(900), "b".repeat(500));
        let pieces = split(&text, 2000);
        assert_eq!(pieces.len(), 2);
        assert!(pieces[0].ends_with('\n'));
    }

    #[test]
    fn mentions_are_rendered_by_name() {
        let name = |m: Mention| match m {
            Mention::User(1) => Some("@Bobby".to_owned()),
            Mention::Channel(2) => Some("#general".to_owned()),
            _ => None,
        };
        assert_eq!(
            render_mentions("hi <@1> and <@!1>, see <#2>; <@9> <b>", name),
            "hi @Bobby and @Bobby, see #general; <@9> <b>"
        );
    }

    #[test]
    fn nicks_become_mentions() {
        let members = vec![("Bob".to_owned(), 1), ("Bob Smith".to_owned(), 2)];
        assert_eq!(
            encode_mentions("@Bob Smith and @Bob, mail bob@Bob.org", &members),
            "<@2> and <@1>, mail bob@Bob.org"
        );
    }
}

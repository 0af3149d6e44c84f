//! Formatting between XMPP and Matrix: XEP-0393 message styling in XMPP
//! bodies, `org.matrix.custom.html` in Matrix's `formatted_body`.
//!
//! Both directions are deliberately small: the common spans (strong,
//! emphasis, strike, code), preformatted blocks, quotes, line breaks and
//! links. Anything else is reduced to its text, so nothing is lost and no
//! markup leaks through.

/// HTML for a styled XMPP body, or `None` when it has no styling (then the
/// plain body alone is sent, as Matrix clients expect).
pub fn styling_to_html(body: &str) -> Option<String> {
    let mut html = String::new();
    let mut styled = false;
    let lines: Vec<&str> = body.split('\n').collect();
    let mut i = 0;
    let mut first = true;
    while i < lines.len() {
        let line = lines[i];
        let mut separator = |html: &mut String| {
            if !first {
                html.push_str("<br>");
            }
            first = false;
        };
        if line.starts_with("```") {
            // A preformatted block runs to a line that is exactly ``` (or the end).
            let mut block = Vec::new();
            i += 1;
            while i < lines.len() && lines[i] != "```" {
                block.push(lines[i]);
                i += 1;
            }
            i += 1;
            separator(&mut html);
            html.push_str("<pre><code>");
            html.push_str(&escape(&block.join("\n")));
            html.push_str("</code></pre>");
            styled = true;
            first = true;
            continue;
        }
        if line.starts_with('>') {
            let mut quoted = Vec::new();
            while i < lines.len() && lines[i].starts_with('>') {
                let inner = &lines[i][1..];
                quoted.push(inner.strip_prefix(' ').unwrap_or(inner));
                i += 1;
            }
            separator(&mut html);
            html.push_str("<blockquote>");
            let inner = quoted.join("\n");
            html.push_str(&styling_to_html(&inner).unwrap_or_else(|| lines_html(&inner)));
            html.push_str("</blockquote>");
            styled = true;
            first = true;
            continue;
        }
        separator(&mut html);
        let (spans, had) = spans_html(line);
        styled |= had;
        html.push_str(&spans);
        i += 1;
    }
    styled.then_some(html)
}

/// Escaped lines joined with `<br>`.
fn lines_html(text: &str) -> String {
    text.split('\n')
        .map(escape)
        .collect::<Vec<_>>()
        .join("<br>")
}

/// One line's spans as HTML; also whether any span was found.
fn spans_html(line: &str) -> (String, bool) {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut styled = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let tag = match c {
            '*' => Some("strong"),
            '_' => Some("em"),
            '~' => Some("del"),
            '`' => Some("code"),
            _ => None,
        };
        let opens = tag.is_some()
            && (i == 0 || chars[i - 1].is_whitespace())
            && chars
                .get(i + 1)
                .is_some_and(|n| !n.is_whitespace() && *n != c);
        if let (Some(tag), true) = (tag, opens) {
            // The closing directive: the same character, after a non-space.
            let close =
                (i + 2..chars.len()).find(|&j| chars[j] == c && !chars[j - 1].is_whitespace());
            if let Some(close) = close {
                let inner: String = chars[i + 1..close].iter().collect();
                let inner_html = if tag == "code" {
                    escape(&inner)
                } else {
                    spans_html(&inner).0
                };
                out.push_str(&format!("<{tag}>{inner_html}</{tag}>"));
                styled = true;
                i = close + 1;
                continue;
            }
        }
        out.push_str(&escape(&c.to_string()));
        i += 1;
    }
    (out, styled)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Matrix HTML as an XEP-0393 styled plain body. Reply fallbacks
/// (`<mx-reply>`) are dropped: the reply is carried as a reference.
pub fn html_to_styling(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    // The link target of each open <a>, to show it after the link text.
    let mut links: Vec<Option<String>> = Vec::new();
    let mut quote_depth = 0usize;
    let mut in_pre = false;
    let mut skip_depth = 0usize;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut out, rest, skip_depth, quote_depth);
            break;
        };
        push_text(&mut out, &rest[..lt], skip_depth, quote_depth);
        let Some(gt) = rest[lt..].find('>') else {
            // A stray '<' is text.
            push_text(&mut out, &rest[lt..], skip_depth, quote_depth);
            break;
        };
        let tag = &rest[lt + 1..lt + gt];
        rest = &rest[lt + gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if name == "mx-reply" {
            if closing {
                skip_depth = skip_depth.saturating_sub(1);
            } else {
                skip_depth += 1;
            }
            continue;
        }
        if skip_depth > 0 {
            continue;
        }
        match (name.as_str(), closing) {
            ("strong" | "b", _) => out.push('*'),
            ("em" | "i", _) => out.push('_'),
            ("del" | "s" | "strike", _) => out.push('~'),
            ("code", _) if !in_pre => out.push('`'),
            ("pre", false) => {
                in_pre = true;
                start_line(&mut out);
                out.push_str("```\n");
            }
            ("pre", true) => {
                in_pre = false;
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str("```\n");
            }
            ("br", _) => {
                out.push('\n');
                push_quote(&mut out, quote_depth);
            }
            ("p" | "div" | "ul" | "ol" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6", _) => {
                start_line(&mut out)
            }
            ("li", false) => {
                start_line(&mut out);
                push_quote(&mut out, quote_depth);
                out.push_str("• ");
            }
            ("blockquote", false) => {
                start_line(&mut out);
                quote_depth += 1;
                push_quote(&mut out, quote_depth);
            }
            ("blockquote", true) => {
                quote_depth = quote_depth.saturating_sub(1);
                start_line(&mut out);
            }
            ("a", false) => links.push(attribute(tag, "href")),
            ("a", true) => {
                if let Some(Some(href)) = links.pop() {
                    if !out.ends_with(&href) {
                        out.push_str(&format!(" <{href}>"));
                    }
                }
            }
            _ => {}
        }
    }
    out.trim_end_matches('\n').to_owned()
}

fn push_text(out: &mut String, text: &str, skip_depth: usize, quote_depth: usize) {
    if skip_depth > 0 {
        return;
    }
    let text = unescape(text);
    // Source line breaks inside a quote continue the quote.
    for (n, part) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
            push_quote(out, quote_depth);
        }
        out.push_str(part);
    }
}

fn push_quote(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("> ");
    }
}

/// Begin a new line unless at the start of one.
fn start_line(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') && !out.ends_with("> ") {
        out.push('\n');
    }
}

/// The value of `name="…"` (or single-quoted) in a tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!("{name}="))? + name.len() + 1;
    let rest = &tag[at..];
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let end = rest[1..].find(quote)?;
    Some(unescape(&rest[1..1 + end]))
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|s| *s <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
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
    fn plain_text_has_no_html() {
        assert_eq!(styling_to_html("just words, 2*3 and a_b"), None);
        assert_eq!(styling_to_html("* not a list item"), None);
    }

    #[test]
    fn styling_becomes_html() {
        assert_eq!(
            styling_to_html("a *bold* and _it_ ~gone~ `x<y`").as_deref(),
            Some("a <strong>bold</strong> and <em>it</em> <del>gone</del> <code>x&lt;y</code>")
        );
        assert_eq!(
            styling_to_html("> quoted *here*\nanswer").as_deref(),
            Some("<blockquote>quoted <strong>here</strong></blockquote>answer")
        );
        assert_eq!(
            styling_to_html("look:\n```\nfn main() {}\n```\nok").as_deref(),
            Some("look:<br><pre><code>fn main() {}</code></pre>ok")
        );
    }

    #[test]
    fn html_becomes_styling() {
        assert_eq!(
            html_to_styling("<strong>bold</strong> and <em>it</em> <del>x</del> <code>c</code>"),
            "*bold* and _it_ ~x~ `c`"
        );
        assert_eq!(
            html_to_styling("<mx-reply><blockquote>old</blockquote></mx-reply>new"),
            "new"
        );
        assert_eq!(
            html_to_styling("<p>one</p><p>two<br>three</p>"),
            "one\ntwo\nthree"
        );
        assert_eq!(html_to_styling("<blockquote>q</blockquote>a"), "> q\na");
        assert_eq!(
            html_to_styling("<a href=\"https://example.org/\">site</a> &amp; &lt;tag&gt;"),
            "site <https://example.org/> & <tag>"
        );
        assert_eq!(
            html_to_styling("<pre><code>let x = 1;\n</code></pre>"),
            "```\nlet x = 1;\n```"
        );
        assert_eq!(html_to_styling("a < b"), "a < b");
    }
}

//! Text crossing between XMPP and IRC: line safety, line length, formatting,
//! character encodings and CTCP.
//!
//! The two sides disagree on almost everything about text. An XMPP body may
//! hold any number of lines and any length; an IRC line ends at CR or LF, must
//! not contain NUL, and is cut by the server at 512 bytes *including* the
//! sender prefix the server adds when relaying. IRC formats with control codes
//! that XML 1.0 forbids outright; XMPP has XEP-0393 message styling. IRC bytes
//! need not be UTF-8 at all, while XMPP is always UTF-8. Every function here
//! is pure, so each of those rules is tested on its own.

use std::borrow::Cow;

pub use encoding_rs::Encoding;

/// The IRC line limit (RFC 1459), CR LF included, message tags excluded.
pub const MAX_LINE: usize = 512;

/// Username length assumed in our own prefix when the server has not shown it
/// to us (10 is the common USERLEN; identd-less users get a leading `~` within it).
pub const ASSUMED_USER_LEN: usize = 10;

/// Hostname length assumed in our own prefix when unknown: the HOSTLEN of
/// most servers (63). Cloaks and IPv6 addresses (at most 39) fit within it.
pub const ASSUMED_HOST_LEN: usize = 63;

/// Bytes a CTCP ACTION adds around its text (`\x01ACTION ` and `\x01`);
/// add it to the overhead when splitting a `/me`.
pub const ACTION_OVERHEAD: usize = 9;

// ---------------------------------------------------------------------------
// XMPP → IRC: line safety and length
// ---------------------------------------------------------------------------

/// Turn an XMPP body into IRC-safe lines, one PRIVMSG each.
///
/// - Splits on `\r\n`, `\n` and `\r`: a raw line break would end the IRC
///   command and let the rest be read as a new command (injection).
/// - Drops every C0 control character except tab: NUL would cut the line on
///   many servers, `\x01` would let the user forge CTCP requests (ACTION is
///   added by the bridge itself, see [`make_action`]), and IRC formatting codes
///   (`\x02`, `\x03`, …) are not something plain XMPP text means.
/// - Skips lines that are empty or only whitespace: IRC cannot send an empty
///   message (the server answers ERR_NOTEXTTOSEND), and sending a lone space
///   instead would only add blank noise lines in the channel.
///
/// The lines are not length-limited: pass each to [`split_line`].
pub fn sanitize_outgoing(text: &str) -> Vec<String> {
    text.split(['\r', '\n'])
        .map(|line| {
            line.chars()
                .filter(|&c| c == '\t' || !is_c0(c))
                .collect::<String>()
        })
        .filter(|line| !line.trim().is_empty())
        .collect()
}

fn is_c0(c: char) -> bool {
    (c as u32) < 0x20
}

/// The `nick!user@host` length to assume for ourselves when the server has
/// not shown us our real prefix (see [`ASSUMED_USER_LEN`], [`ASSUMED_HOST_LEN`]).
pub fn assumed_prefix_len(nick: &str) -> usize {
    nick.len() + 1 + ASSUMED_USER_LEN + 1 + ASSUMED_HOST_LEN
}

/// The bytes of a relayed `COMMAND target :text` line that are not the text:
/// `:` + `own_prefix_len` (our `nick!user@host`) + ` ` + command + ` ` + target
/// + ` :` + CR LF.
///
/// Why the prefix counts although we do not send it: the server forwards our
/// line to the other clients with `:nick!user@host ` prepended and cuts what
/// goes beyond 512 bytes, so the text must leave room for it.
pub fn privmsg_overhead(command: &str, target: &str, own_prefix_len: usize) -> usize {
    1 + own_prefix_len + 1 + command.len() + 1 + target.len() + 2 + 2
}

/// The most bytes of text one `PRIVMSG target :text` can carry, within the
/// 512-byte limit, given the length of our own `nick!user@host` (use
/// [`assumed_prefix_len`] when unknown). NOTICE is shorter, so this is safe
/// for it too.
pub fn privmsg_budget(target: &str, own_prefix_len: usize) -> usize {
    MAX_LINE.saturating_sub(privmsg_overhead("PRIVMSG", target, own_prefix_len))
}

/// Split one logical line into chunks that each fit in an IRC line of
/// `max_line` bytes (512, or the server's LINELEN), where `target_prefix_len`
/// bytes of the line are taken by everything but the text (see
/// [`privmsg_overhead`]; add [`ACTION_OVERHEAD`] for a `/me`).
///
/// - Chunks end on UTF-8 character boundaries; the byte limit is never exceeded
///   (except when the budget is below one character, where each chunk is one
///   character, the only way to make progress).
/// - A chunk ends at the last space when one lies in its last 30%, and that one
///   space is dropped: readers see the words intact. A word longer than that is
///   cut hard. Grapheme clusters (a letter and its combining accents) can be
///   split by a hard cut; that needs Unicode tables this crate does not carry.
/// - No chunk is empty; an empty text gives no chunk.
pub fn split_line(target_prefix_len: usize, text: &str, max_line: usize) -> Vec<String> {
    let budget = max_line.saturating_sub(target_prefix_len);
    let mut chunks = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() <= budget {
            chunks.push(rest.to_owned());
            break;
        }
        let mut cut = rest.floor_char_boundary(budget);
        if cut == 0 {
            cut = rest.chars().next().map_or(1, char::len_utf8);
        }
        // A space right at `cut` (if that byte exists) ends a full chunk, so it is searched too.
        let soft_from = cut - cut * 3 / 10;
        let soft = rest.as_bytes()[..(cut + 1).min(rest.len())]
            .iter()
            .rposition(|&b| b == b' ')
            .filter(|&p| p > 0 && p >= soft_from);
        match soft {
            Some(space) => {
                chunks.push(rest[..space].to_owned());
                rest = &rest[space + 1..];
            }
            None => {
                chunks.push(rest[..cut].to_owned());
                rest = &rest[cut..];
            }
        }
    }
    chunks
}

// ---------------------------------------------------------------------------
// IRC → XMPP: formatting
// ---------------------------------------------------------------------------

/// One step of an IRC line: a character to show, or a formatting code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Char(char),
    Bold,
    Italic,
    Strike,
    Mono,
    Underline,
    /// `\x03` or `\x04` with its colour numbers.
    Colour,
    Reverse,
    Reset,
}

/// Reads an IRC line as [`Piece`]s, swallowing colour parameters.
struct Pieces<'a> {
    rest: &'a str,
}

impl Pieces<'_> {
    /// Skip up to `max` leading characters that satisfy `pred`; how many were skipped.
    fn skip(&mut self, max: usize, pred: impl Fn(char) -> bool) -> usize {
        let n = self.rest.chars().take(max).take_while(|&c| pred(c)).count();
        self.rest = &self.rest[n..]; // the characters are ASCII, one byte each
        n
    }

    /// After `\x03`: `fg[,bg]`, 1–2 digits each; a comma is only eaten when a digit follows.
    fn skip_colour(&mut self) {
        if self.skip(2, |c| c.is_ascii_digit()) > 0
            && self.rest.starts_with(',')
            && self.rest[1..].starts_with(|c: char| c.is_ascii_digit())
        {
            self.rest = &self.rest[1..];
            self.skip(2, |c| c.is_ascii_digit());
        }
    }

    /// After `\x04`: `RRGGBB[,RRGGBB]`, exactly six hex digits each.
    fn skip_hex_colour(&mut self) {
        let six_hex = |s: &str| s.len() >= 6 && s.as_bytes()[..6].iter().all(u8::is_ascii_hexdigit);
        if six_hex(self.rest) {
            self.rest = &self.rest[6..];
            if self.rest.starts_with(',') && six_hex(&self.rest[1..]) {
                self.rest = &self.rest[7..];
            }
        }
    }
}

impl Iterator for Pieces<'_> {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        let c = self.rest.chars().next()?;
        self.rest = &self.rest[c.len_utf8()..];
        Some(match c {
            '\x02' => Piece::Bold,
            '\x1D' => Piece::Italic,
            '\x1E' => Piece::Strike,
            '\x11' => Piece::Mono,
            '\x1F' => Piece::Underline,
            '\x16' => Piece::Reverse,
            '\x0F' => Piece::Reset,
            '\x03' => {
                self.skip_colour();
                Piece::Colour
            }
            '\x04' => {
                self.skip_hex_colour();
                Piece::Colour
            }
            c => Piece::Char(c),
        })
    }
}

fn pieces(text: &str) -> Pieces<'_> {
    Pieces { rest: text }
}

/// Remove every IRC formatting code (bold, italic, underline, strikethrough,
/// monospace, reverse, reset, and colours with their numbers), keeping all
/// other characters as they are. For nicks, topics and anything shown
/// without styling; combine with [`xml_safe`] before putting it into XML.
pub fn strip_formatting(text: &str) -> String {
    pieces(text)
        .filter_map(|p| match p {
            Piece::Char(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// Whether XML 1.0 (and so an XMPP stream) can carry `c`, and we want it: no
/// C0 control except tab and line feed (CR would be normalised away by XML
/// parsers anyway), no U+FFFE or U+FFFF. Rust strings hold no surrogates.
fn xml_allowed(c: char) -> bool {
    (c == '\t' || c == '\n' || !is_c0(c)) && c != '\u{FFFE}' && c != '\u{FFFF}'
}

/// `text` without the characters XML 1.0 forbids (and CR); see `xml_allowed`.
/// An XMPP stream with one of them is closed by the server, so anything from
/// IRC goes through this (or through [`irc_to_styling`], which applies it).
pub fn xml_safe(text: &str) -> Cow<'_, str> {
    if text.chars().all(xml_allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.chars().filter(|&c| xml_allowed(c)).collect())
    }
}

const BOLD: u8 = 1;
const ITALIC: u8 = 2;
const STRIKE: u8 = 4;
const MONO: u8 = 8;
/// In the order spans open when they start together and end together.
const STYLES: [u8; 4] = [BOLD, ITALIC, STRIKE, MONO];

fn directive(style: u8) -> char {
    match style {
        BOLD => '*',
        ITALIC => '_',
        STRIKE => '~',
        _ => '`',
    }
}

/// Convert an IRC message to an XMPP body with XEP-0393 message styling.
///
/// - bold `\x02` → `*…*`, italic `\x1D` → `_…_`, strikethrough `\x1E` →
///   `~…~`, monospace `\x11` → `` `…` ``; underline `\x1F` and colours
///   (`\x03fg[,bg]`, `\x04RRGGBB[,RRGGBB]`) have no XEP-0393 form and are dropped;
/// - reset `\x0F` and reverse `\x16` end every open style (reverse is a colour
///   effect, but clients disagree on what it combines with, so it is taken as
///   a clean break);
/// - styles still open at the end of a line are closed there.
///
/// XEP-0393 only recognises a span whose opening directive starts the line or
/// follows whitespace or another opening directive, whose text neither starts
/// nor ends with whitespace, is not empty, and holds no line break; a
/// preformatted (`` ` ``) span styles nothing inside it. So whitespace at the
/// edges of a styled run is moved outside the markers, overlapping styles are
/// closed and reopened to nest, and any span that would still break a rule is
/// emitted without its markers (its text is kept): a receiving client then
/// shows plain text rather than stray asterisks. A span whose text contains its
/// own directive character is left plain too, since that character would end
/// it early. (Literal `*`, `_`, `~`, `` ` `` in IRC text cannot be escaped in
/// XEP-0393 and may still be read as styling by the receiver.)
///
/// The result contains no character XML 1.0 forbids (see [`xml_safe`]).
pub fn irc_to_styling(text: &str) -> String {
    let mut chars: Vec<(char, u8)> = Vec::with_capacity(text.len());
    let mut style = 0u8;
    for piece in pieces(text) {
        match piece {
            Piece::Char(c) => {
                if xml_allowed(c) {
                    chars.push((c, style));
                }
            }
            Piece::Bold => style ^= BOLD,
            Piece::Italic => style ^= ITALIC,
            Piece::Strike => style ^= STRIKE,
            Piece::Mono => style ^= MONO,
            Piece::Reset | Piece::Reverse => style = 0,
            Piece::Underline | Piece::Colour => {}
        }
    }
    let mut out = String::with_capacity(text.len());
    for (i, line) in chars.split(|&(c, _)| c == '\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_line(line, &mut out);
    }
    out
}

/// A styled span of one line, found while nesting, kept or dropped afterwards.
struct Span {
    style: u8,
    /// The preformatted span it sits in, if any.
    inside_mono: Option<usize>,
    /// Its text, without any directive.
    content: String,
    keep: bool,
}

enum Tok {
    Text(String),
    Open(usize),
    Close(usize),
}

/// What the last emitted thing was, for the opening-directive rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    LineStart,
    Whitespace,
    OtherChar,
    Opening,
    Closing,
}

fn render_line(line: &[(char, u8)], out: &mut String) {
    // 1. Move whitespace at the edges of each styled run out of the style.
    let mut styles: Vec<u8> = line.iter().map(|&(_, s)| s).collect();
    for bit in STYLES {
        let mut i = 0;
        while i < line.len() {
            if styles[i] & bit == 0 {
                i += 1;
                continue;
            }
            let mut end = i;
            while end < line.len() && styles[end] & bit != 0 {
                end += 1;
            }
            let mut a = i;
            while a < end && line[a].0.is_whitespace() {
                styles[a] &= !bit;
                a += 1;
            }
            let mut b = end;
            while b > a && line[b - 1].0.is_whitespace() {
                styles[b - 1] &= !bit;
                b -= 1;
            }
            i = end;
        }
    }

    // 2. Runs of equal style.
    let mut runs: Vec<(u8, String)> = Vec::new();
    for (&(c, _), &s) in line.iter().zip(&styles) {
        match runs.last_mut() {
            Some((style, text)) if *style == s => text.push(c),
            _ => runs.push((s, c.to_string())),
        }
    }

    // 3. Properly nested open/close tokens: when a style ends, close down to it
    //    and reopen what continues; open longer-lasting styles first (outside),
    //    preformatted last (inside, as it cannot contain others).
    let mut spans: Vec<Span> = Vec::new();
    let mut toks: Vec<Tok> = Vec::new();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    for (ri, (set, text)) in runs.iter().enumerate() {
        if let Some(k) = stack.iter().position(|&(bit, _)| set & bit == 0) {
            while stack.len() > k {
                let (_, id) = stack.pop().expect("non-empty");
                toks.push(Tok::Close(id));
            }
        }
        let mut opening: Vec<u8> = STYLES
            .into_iter()
            .filter(|&bit| set & bit != 0 && !stack.iter().any(|&(b, _)| b == bit))
            .collect();
        let lasts = |bit: u8| runs[ri..].iter().take_while(|(s, _)| s & bit != 0).count();
        opening.sort_by_key(|&bit| (bit == MONO, std::cmp::Reverse(lasts(bit))));
        for bit in opening {
            let inside_mono = stack.iter().find(|&&(b, _)| b == MONO).map(|&(_, id)| id);
            spans.push(Span {
                style: bit,
                inside_mono,
                content: String::new(),
                keep: false,
            });
            stack.push((bit, spans.len() - 1));
            toks.push(Tok::Open(spans.len() - 1));
        }
        for &(_, id) in &stack {
            spans[id].content.push_str(text);
        }
        toks.push(Tok::Text(text.clone()));
    }
    while let Some((_, id)) = stack.pop() {
        toks.push(Tok::Close(id));
    }

    // 4. Keep only spans XEP-0393 will recognise, deciding left to right.
    let mut prev = Prev::LineStart;
    for tok in &toks {
        match *tok {
            Tok::Text(ref t) => {
                prev = if t.ends_with(char::is_whitespace) {
                    Prev::Whitespace
                } else {
                    Prev::OtherChar
                };
            }
            Tok::Open(id) => {
                let span = &spans[id];
                let content = &span.content;
                let keep = matches!(prev, Prev::LineStart | Prev::Whitespace | Prev::Opening)
                    && span.inside_mono.is_none_or(|m| !spans[m].keep)
                    && !content.is_empty()
                    && !content.starts_with(char::is_whitespace)
                    && !content.ends_with(char::is_whitespace)
                    && !content.contains(directive(span.style));
                spans[id].keep = keep;
                if keep {
                    prev = Prev::Opening;
                }
            }
            Tok::Close(id) => {
                if spans[id].keep {
                    prev = Prev::Closing;
                }
            }
        }
    }

    // 5. Render.
    for tok in toks {
        match tok {
            Tok::Text(t) => out.push_str(&t),
            Tok::Open(id) | Tok::Close(id) => {
                if spans[id].keep {
                    out.push(directive(spans[id].style));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Encodings
// ---------------------------------------------------------------------------

/// The fallback for lines that are not UTF-8: Windows-1252.
///
/// In encoding_rs (which follows the WHATWG Encoding Standard) windows-1252
/// maps *every* byte to a character: 0x00–0x7F and 0xA0–0xFF exactly as
/// Latin-1, 0x80–0x9F to the cp1252 punctuation, and its five holes to the C1
/// controls of the same value. So it decodes Latin-1 text without loss and
/// never produces U+FFFD; the labels `latin1` and `iso-8859-1` resolve to it.
pub fn default_fallback() -> &'static Encoding {
    encoding_rs::WINDOWS_1252
}

/// Decode one IRC line: as UTF-8 when it is valid UTF-8 (the modern norm,
/// and a valid UTF-8 line is practically never meant as Latin-1), otherwise
/// with `fallback` (see [`default_fallback`]), replacing what it cannot map.
///
/// Decode per line, not per connection: on one channel some clients send
/// UTF-8 and some still send Latin-1.
///
/// `fallback` is asked only for a line that is not UTF-8: the encoding may
/// depend on what the line is about (a channel's own, see
/// [`crate::channel_encodings`]).
pub fn decode_line(bytes: &[u8], fallback: impl FnOnce() -> &'static Encoding) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => fallback().decode_without_bom_handling(bytes).0.into_owned(),
    }
}

/// The encoding a configured name means, by the WHATWG labels (`utf-8`,
/// `latin1`, `iso-8859-15`, `koi8-r`, `shift_jis`, …, case and surrounding
/// whitespace ignored), plus `latin-1`, which people write but WHATWG lacks.
///
/// `None` for unknown labels and for encodings unusable on IRC: UTF-16 (its
/// bytes include NUL, CR and LF) and WHATWG's `replacement` (what labels such
/// as `iso-2022-kr` resolve to, which decodes everything to U+FFFD).
pub fn encoding_for_label(label: &str) -> Option<&'static Encoding> {
    let label = label.trim();
    let encoding = if label.eq_ignore_ascii_case("latin-1") {
        encoding_rs::WINDOWS_1252
    } else {
        Encoding::for_label(label.as_bytes())?
    };
    if encoding == encoding_rs::REPLACEMENT
        || encoding == encoding_rs::UTF_16LE
        || encoding == encoding_rs::UTF_16BE
    {
        None
    } else {
        Some(encoding)
    }
}

// ---------------------------------------------------------------------------
// CTCP
// ---------------------------------------------------------------------------

/// Split a CTCP message `\x01VERB args\x01` into its verb and arguments. The
/// final `\x01` may be missing (some clients omit it, and servers cut long lines).
fn ctcp_parts(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix('\x01')?;
    let inner = inner.strip_suffix('\x01').unwrap_or(inner);
    let (verb, args) = inner.split_once(' ').unwrap_or((inner, ""));
    (!verb.is_empty()).then_some((verb, args))
}

/// The text of a `/me` (`\x01ACTION waves\x01` → `waves`), or `None` when
/// `text` is not a CTCP ACTION. The verb is matched case-insensitively.
pub fn ctcp_action(text: &str) -> Option<&str> {
    match ctcp_parts(text)? {
        (verb, args) if verb.eq_ignore_ascii_case("ACTION") => Some(args),
        _ => None,
    }
}

/// A CTCP request or reply other than ACTION (`VERSION`, `PING 123`,
/// `TIME`, …) as `(verb, args)`, so the bridge can answer or ignore it
/// instead of showing it as text. `None` for plain text and for ACTION (see
/// [`ctcp_action`]).
pub fn ctcp_query(text: &str) -> Option<(&str, &str)> {
    ctcp_parts(text).filter(|(verb, _)| !verb.eq_ignore_ascii_case("ACTION"))
}

/// Characters that would end or corrupt a CTCP message.
fn ctcp_safe(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\x00' | '\x01' | '\r' | '\n'))
        .collect()
}

/// biboumi's `/mode` in a channel: a message of one line starting with
/// `/mode` sets the channel's modes (`/mode +b *!*@host`) instead of being
/// said; the arguments, split on spaces.
pub fn mode_command(body: &str) -> Option<Vec<&str>> {
    let line = body.trim();
    if line.contains(['\n', '\r']) {
        return None;
    }
    let rest = line.strip_prefix("/mode")?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    Some(rest.split(' ').filter(|a| !a.is_empty()).collect())
}

/// A `/me` for IRC: `\x01ACTION text\x01`. NUL, `\x01`, CR and LF are removed
/// from `text`, so that it cannot end the CTCP or the line early.
pub fn make_action(text: &str) -> String {
    format!("\x01ACTION {}\x01", ctcp_safe(text))
}

/// A CTCP message `\x01VERB args\x01` (`\x01VERB\x01` without arguments), e.g.
/// the NOTICE that answers a VERSION request. Both parts are cleaned like
/// [`make_action`]'s text.
pub fn make_ctcp(verb: &str, args: &str) -> String {
    let verb = ctcp_safe(verb);
    if args.is_empty() {
        format!("\x01{verb}\x01")
    } else {
        format!("\x01{verb} {}\x01", ctcp_safe(args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mode_command_is_one_line_starting_with_slash_mode() {
        assert_eq!(
            mode_command("/mode +b *!*@host"),
            Some(vec!["+b", "*!*@host"])
        );
        assert_eq!(
            mode_command(" /mode  +ov  a b "),
            Some(vec!["+ov", "a", "b"])
        );
        assert_eq!(mode_command("/mode"), Some(vec![]));
        assert_eq!(mode_command("/modes are fun"), None);
        assert_eq!(mode_command("use /mode +m"), None);
        assert_eq!(mode_command("/mode +m\nand more"), None);
    }

    /// A small deterministic generator for the property loops (xorshift32).
    struct Rng(u32);

    impl Rng {
        fn next(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            self.0
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.next() as usize % items.len()]
        }

        fn string(&mut self, items: &[&str], max_len: u32) -> String {
            let len = self.next() % max_len;
            (0..len).map(|_| self.pick(items)).collect()
        }
    }

    // --- sanitize_outgoing ---------------------------------------------------

    #[test]
    fn sanitize_splits_every_line_break() {
        assert_eq!(sanitize_outgoing("a\r\nb\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(sanitize_outgoing("one line"), ["one line"]);
        assert_eq!(sanitize_outgoing("trailing\r\n"), ["trailing"]);
    }

    #[test]
    fn sanitize_skips_blank_lines() {
        assert_eq!(sanitize_outgoing("a\n\n\nb"), ["a", "b"]);
        assert_eq!(sanitize_outgoing("a\n   \n\tb"), ["a", "\tb"]);
        assert!(sanitize_outgoing("").is_empty());
        assert!(sanitize_outgoing("\r\n\r\n").is_empty());
        assert!(
            sanitize_outgoing("\x00\x01").is_empty(),
            "empty once cleaned"
        );
        assert_eq!(sanitize_outgoing("  indented"), ["  indented"]);
    }

    #[test]
    fn sanitize_drops_controls() {
        assert_eq!(sanitize_outgoing("a\x00b"), ["ab"]);
        assert_eq!(sanitize_outgoing("\x01VERSION\x01"), ["VERSION"]);
        assert_eq!(sanitize_outgoing("\x02bold\x0304red"), ["bold04red"]);
        assert_eq!(sanitize_outgoing("tab\tkept"), ["tab\tkept"]);
        assert_eq!(sanitize_outgoing("ünïcødé ✓ \u{7f}"), ["ünïcødé ✓ \u{7f}"]);
    }

    #[test]
    fn sanitize_property_no_control_survives() {
        let alphabet = [
            "a", "é", " ", "\t", "\r", "\n", "\x00", "\x01", "\x02", "\x03", "\x1f", "😀", "x",
        ];
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let text = rng.string(&alphabet, 30);
            let lines = sanitize_outgoing(&text);
            for line in &lines {
                assert!(!line.trim().is_empty(), "{text:?}");
                assert!(line.chars().all(|c| c == '\t' || !is_c0(c)), "{text:?}");
            }
            let keep = |s: &str| -> String {
                s.chars()
                    .filter(|c| !c.is_whitespace() && !is_c0(*c))
                    .collect()
            };
            assert_eq!(keep(&lines.concat()), keep(&text), "no visible text lost");
        }
    }

    // --- split_line ------------------------------------------------------------

    #[test]
    fn budget_arithmetic() {
        // ":nick!user@host PRIVMSG #chan :" + text + "\r\n"
        let prefix = "nick!user@host".len();
        let overhead = privmsg_overhead("PRIVMSG", "#chan", prefix);
        assert_eq!(overhead, ":nick!user@host PRIVMSG #chan :\r\n".len());
        assert_eq!(privmsg_budget("#chan", prefix), 512 - overhead);
        assert_eq!(assumed_prefix_len("nick"), 4 + 1 + 10 + 1 + 63);
        assert_eq!(privmsg_budget("#c", 600), 0, "saturates");
        assert_eq!(ACTION_OVERHEAD, make_action("").len());
    }

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(split_line(100, "hello", 512), ["hello"]);
        assert!(split_line(100, "", 512).is_empty());
        let exact = "x".repeat(412);
        assert_eq!(split_line(100, &exact, 512), std::slice::from_ref(&exact));
    }

    #[test]
    fn splits_at_last_space_in_the_tail() {
        // Budget 10.
        assert_eq!(split_line(0, "aaaa bbbb cccc", 10), ["aaaa bbbb", "cccc"]);
        // A space exactly at the limit ends a full chunk.
        assert_eq!(split_line(0, "aaaaaaaaaa bbb", 10), ["aaaaaaaaaa", "bbb"]);
        // A space too early (before 70%) is not used: hard cut instead.
        assert_eq!(
            split_line(0, "ab cdefghijklmn", 10),
            ["ab cdefghi", "jklmn"]
        );
        // A word longer than the budget is cut hard.
        assert_eq!(
            split_line(0, "abcdefghijklmnopqrstuvwxy", 10),
            ["abcdefghij", "klmnopqrst", "uvwxy"]
        );
    }

    #[test]
    fn cuts_on_char_boundaries() {
        // "é" is 2 bytes; a budget of 5 fits two of them.
        assert_eq!(split_line(0, "ééééé", 5), ["éé", "éé", "é"]);
        // A 4-byte emoji with a 3-byte budget: one per chunk, over budget but progressing.
        assert_eq!(split_line(0, "😀😀", 3), ["😀", "😀"]);
        assert_eq!(split_line(10, "ab", 10), ["a", "b"], "zero budget");
    }

    #[test]
    fn split_property() {
        let alphabet = ["a", "b", "é", "€", "😀", " ", "  ", "word", "longerword"];
        let mut rng = Rng(42);
        for _ in 0..3000 {
            let text = rng.string(&alphabet, 60);
            let budget = 1 + (rng.next() % 40) as usize;
            let chunks = split_line(7, &text, budget + 7);
            let widest = text.chars().map(char::len_utf8).max().unwrap_or(0);
            for chunk in &chunks {
                assert!(!chunk.is_empty(), "{text:?} / {budget}");
                assert!(
                    chunk.len() <= budget.max(widest),
                    "{chunk:?} over {budget} in {text:?}"
                );
            }
            // Only single break spaces are lost: the text is the chunks joined
            // by "" or " ", plus perhaps one trailing space.
            assert!(rebuilds(&text, &chunks), "{text:?} / {budget}: {chunks:?}");
        }
    }

    /// Whether `text` is `chunks` joined each by "" (hard cut) or " " (soft
    /// break), plus perhaps a final dropped space.
    fn rebuilds(text: &str, chunks: &[String]) -> bool {
        match chunks.split_first() {
            None => text.is_empty(),
            Some((first, rest)) => {
                text.starts_with(first.as_str()) && rejoins(&text[first.len()..], rest)
            }
        }
    }

    fn rejoins(text: &str, chunks: &[String]) -> bool {
        match chunks.split_first() {
            None => text.is_empty() || text == " ",
            Some((next, rest)) => [0, 1].into_iter().any(|skip| {
                (skip == 0 || text.starts_with(' '))
                    && text[skip..].starts_with(next.as_str())
                    && rejoins(&text[skip + next.len()..], rest)
            }),
        }
    }

    #[test]
    fn realistic_privmsg_lines_fit() {
        let nick = "estuary_user";
        let prefix = assumed_prefix_len(nick);
        let target = "#a-rather-long-channel-name";
        let text = "Lorem ipsum dolor sit amet, ünïcødé ✓ ".repeat(60);
        let overhead = privmsg_overhead("PRIVMSG", target, prefix);
        for chunk in split_line(overhead, &text, MAX_LINE) {
            let line = format!(
                ":{nick}!{}@{} PRIVMSG {target} :{chunk}\r\n",
                "u".repeat(10),
                "h".repeat(63)
            );
            assert!(line.len() <= MAX_LINE, "{}", line.len());
        }
        for chunk in split_line(overhead + ACTION_OVERHEAD, &text, MAX_LINE) {
            assert!(make_action(&chunk).len() + overhead <= MAX_LINE);
        }
    }

    // --- formatting -------------------------------------------------------------

    #[test]
    fn strip_all_formatting() {
        assert_eq!(strip_formatting("\x02b\x02 \x1Di\x1D \x1Fu\x1F"), "b i u");
        assert_eq!(
            strip_formatting("\x0304red\x03 \x0304,12on blue\x0f!"),
            "red on blue!"
        );
        assert_eq!(strip_formatting("\x03123"), "3", "at most two digits");
        assert_eq!(
            strip_formatting("\x035,x"),
            ",x",
            "comma without a digit stays"
        );
        assert_eq!(strip_formatting("\x03,12x"), ",12x", "no fg, no colour");
        assert_eq!(strip_formatting("\x031,234"), "4");
        assert_eq!(strip_formatting("\x04FF0000red"), "red");
        assert_eq!(strip_formatting("\x04ff0000,00FF00x"), "x");
        assert_eq!(
            strip_formatting("\x04FF00,x"),
            "FF00,x",
            "short hex is text"
        );
        assert_eq!(strip_formatting("\x04abcdef,12y"), ",12y");
        assert_eq!(strip_formatting("\x11mono\x11\x16rev\x1Es"), "monorevs");
        assert_eq!(strip_formatting("\x03"), "");
        assert_eq!(strip_formatting("\x04"), "");
        assert_eq!(strip_formatting("plain ✓"), "plain ✓");
        assert_eq!(strip_formatting("keeps\x01ctcp\x07"), "keeps\x01ctcp\x07");
    }

    #[test]
    fn xml_safety() {
        assert!(matches!(xml_safe("fine\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(xml_safe("a\x00b\x07c\rd\u{FFFE}e\u{FFFF}f"), "abcdef");
        assert_eq!(
            xml_safe("\u{85}\u{D7FF}\u{E000}\u{10FFFF}"),
            "\u{85}\u{D7FF}\u{E000}\u{10FFFF}"
        );
    }

    #[test]
    fn simple_styles() {
        assert_eq!(irc_to_styling("\x02bold\x02 text"), "*bold* text");
        assert_eq!(irc_to_styling("a \x1Dit\x1D b"), "a _it_ b");
        assert_eq!(irc_to_styling("\x1Egone\x1E"), "~gone~");
        assert_eq!(irc_to_styling("run \x11ls -l\x11 now"), "run `ls -l` now");
        assert_eq!(irc_to_styling("\x1Funder\x1F"), "under");
        assert_eq!(irc_to_styling("\x0304,02red\x03 plain"), "red plain");
        assert_eq!(irc_to_styling("\x04FF8800orange"), "orange");
        assert_eq!(irc_to_styling("plain"), "plain");
        assert_eq!(irc_to_styling(""), "");
    }

    #[test]
    fn unclosed_and_reset() {
        assert_eq!(irc_to_styling("\x02unclosed"), "*unclosed*");
        assert_eq!(irc_to_styling("\x02bold\x0f plain"), "*bold* plain");
        assert_eq!(irc_to_styling("\x02\x1Dboth\x0f x"), "*_both_* x");
        assert_eq!(irc_to_styling("\x02bold \x16rev"), "*bold* rev");
        assert_eq!(irc_to_styling("\x02\x02"), "");
        assert_eq!(irc_to_styling("\x02"), "");
    }

    #[test]
    fn whitespace_moves_outside_markers() {
        assert_eq!(irc_to_styling("\x02 spaced \x02"), " *spaced* ");
        assert_eq!(irc_to_styling("x\x02 \x02y"), "x y", "whitespace-only span");
        assert_eq!(irc_to_styling("\x02two words\x02"), "*two words*");
    }

    #[test]
    fn spans_that_cannot_be_expressed_are_plain() {
        assert_eq!(
            irc_to_styling("foo\x02bar\x02"),
            "foobar",
            "mid-word opening"
        );
        assert_eq!(irc_to_styling("\x02a*b\x02"), "a*b", "own directive inside");
        assert_eq!(
            irc_to_styling("\x02x\x02\x1Dy\x1D"),
            "*x*y",
            "opening after a closing"
        );
    }

    #[test]
    fn nesting() {
        assert_eq!(irc_to_styling("\x02a \x1Db\x1D c\x02"), "*a _b_ c*");
        // Overlap: bold "a b", italic "b c": italic is closed with bold and
        // cannot reopen right after a closing directive.
        assert_eq!(irc_to_styling("\x02a \x1Db\x02 c\x1D"), "*a _b_* c");
        // The longer-lasting style opens outside.
        assert_eq!(irc_to_styling("\x1D\x02a\x02 b\x1D"), "_*a* b_");
        // Monospace is innermost and styles nothing inside it.
        assert_eq!(irc_to_styling("\x11\x02x\x02\x11"), "*`x`*");
        assert_eq!(irc_to_styling("\x11a \x02b\x02\x11"), "`a b`");
        assert_eq!(irc_to_styling("\x11a`b\x11 \x02c\x02"), "a`b *c*");
    }

    #[test]
    fn styles_do_not_cross_lines() {
        assert_eq!(irc_to_styling("\x02a\nb\x02 c"), "*a*\n*b* c");
        assert_eq!(irc_to_styling("a\r\nb"), "a\nb", "CR removed");
    }

    #[test]
    fn forbidden_characters_removed() {
        assert_eq!(irc_to_styling("a\x00b\x01c\x07d\x1be\u{FFFF}"), "abcde");
        assert_eq!(irc_to_styling("tab\tok"), "tab\tok");
    }

    /// Check that every directive in a line forms a span XEP-0393 recognises,
    /// for text that has no literal directive characters of its own.
    fn assert_valid_styling(line: &str, input: &str) {
        let chars: Vec<char> = line.chars().collect();
        let mut stack: Vec<char> = Vec::new();
        let mut prev = Prev::LineStart;
        for (i, &c) in chars.iter().enumerate() {
            if matches!(c, '*' | '_' | '~' | '`') {
                if stack.last() == Some(&c) {
                    assert!(
                        matches!(prev, Prev::OtherChar | Prev::Closing),
                        "closing {c} after whitespace/opening in {line:?} from {input:?}"
                    );
                    stack.pop();
                    prev = Prev::Closing;
                } else {
                    assert!(
                        matches!(prev, Prev::LineStart | Prev::Whitespace | Prev::Opening),
                        "bad opening {c} in {line:?} from {input:?}"
                    );
                    assert!(!stack.contains(&c), "nested same {c} in {line:?}");
                    assert!(!stack.contains(&'`'), "span inside pre in {line:?}");
                    let next = chars.get(i + 1).copied();
                    assert!(
                        next.is_some_and(|n| !n.is_whitespace()),
                        "opening {c} before whitespace in {line:?} from {input:?}"
                    );
                    stack.push(c);
                    prev = Prev::Opening;
                }
            } else {
                prev = if c.is_whitespace() {
                    Prev::Whitespace
                } else {
                    Prev::OtherChar
                };
            }
        }
        assert!(
            stack.is_empty(),
            "unclosed {stack:?} in {line:?} from {input:?}"
        );
    }

    #[test]
    fn styling_property() {
        let alphabet = [
            "a",
            "b",
            "é",
            " ",
            " ",
            "\t",
            "\n",
            "\x02",
            "\x1D",
            "\x1E",
            "\x11",
            "\x1F",
            "\x0F",
            "\x16",
            "\x034",
            "\x0312,5",
            "\x04A0B0C0",
            "\x00",
            "\x01",
            "\r",
            "😀",
            "\u{FFFF}",
        ];
        let mut rng = Rng(1234);
        for _ in 0..5000 {
            let input = rng.string(&alphabet, 40);
            let out = irc_to_styling(&input);
            assert!(out.chars().all(xml_allowed), "{out:?}");
            let without_markers: String = out
                .chars()
                .filter(|c| !matches!(c, '*' | '_' | '~' | '`'))
                .collect();
            assert_eq!(
                without_markers,
                xml_safe(&strip_formatting(&input)),
                "{input:?}"
            );
            for line in out.split('\n') {
                assert_valid_styling(line, &input);
            }
        }
    }

    // --- encodings --------------------------------------------------------------

    #[test]
    fn decode_prefers_utf8() {
        let latin1 = default_fallback();
        assert_eq!(decode_line("héllo ✓".as_bytes(), || latin1), "héllo ✓");
        assert_eq!(decode_line(b"h\xe9llo", || latin1), "héllo");
        assert_eq!(
            decode_line(b"\x80 euro", || latin1),
            "€ euro",
            "cp1252 range"
        );
        assert_eq!(decode_line(b"", || latin1), "");
        let koi8 = encoding_for_label("koi8-r").unwrap();
        assert_eq!(decode_line(b"\xf0\xd2\xc9\xd7\xc5\xd4", || koi8), "Привет");
        // A UTF-8 fallback replaces what is invalid.
        assert_eq!(decode_line(b"a\xffb", || encoding_rs::UTF_8), "a\u{FFFD}b");
    }

    #[test]
    fn windows_1252_maps_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let text = decode_line(&all, default_fallback);
        assert_eq!(text.chars().count(), 256);
        assert!(!text.contains('\u{FFFD}'));
        for (byte, c) in all.iter().zip(text.chars()) {
            if *byte < 0x80 || *byte >= 0xA0 {
                assert_eq!(c as u32, u32::from(*byte), "Latin-1 identity for {byte:#x}");
            }
        }
        // Invalid UTF-8 is decoded per byte, each byte to one char.
        for byte in 0x80..=0xFFu8 {
            assert_eq!(
                decode_line(&[b'a', byte], default_fallback).chars().count(),
                2
            );
        }
    }

    #[test]
    fn labels() {
        assert_eq!(encoding_for_label("UTF-8"), Some(encoding_rs::UTF_8));
        assert_eq!(
            encoding_for_label(" latin1 "),
            Some(encoding_rs::WINDOWS_1252)
        );
        assert_eq!(
            encoding_for_label("ISO-8859-1"),
            Some(encoding_rs::WINDOWS_1252)
        );
        assert_eq!(
            encoding_for_label("latin-1"),
            Some(encoding_rs::WINDOWS_1252)
        );
        assert_eq!(
            encoding_for_label("iso-8859-15"),
            Some(encoding_rs::ISO_8859_15)
        );
        assert_eq!(
            encoding_for_label("cp1251"),
            Some(encoding_rs::WINDOWS_1251)
        );
        assert_eq!(encoding_for_label("no-such-encoding"), None);
        assert_eq!(encoding_for_label(""), None);
        assert_eq!(encoding_for_label("utf-16"), None);
        assert_eq!(encoding_for_label("utf-16be"), None);
        assert_eq!(encoding_for_label("iso-2022-kr"), None, "replacement");
    }

    // --- CTCP ---------------------------------------------------------------------

    #[test]
    fn actions() {
        assert_eq!(ctcp_action("\x01ACTION waves\x01"), Some("waves"));
        assert_eq!(
            ctcp_action("\x01ACTION waves"),
            Some("waves"),
            "no final \\x01"
        );
        assert_eq!(ctcp_action("\x01ACTION\x01"), Some(""));
        assert_eq!(ctcp_action("\x01action lower\x01"), Some("lower"));
        assert_eq!(
            ctcp_action("\x01ACTION  two spaces\x01"),
            Some(" two spaces")
        );
        assert_eq!(ctcp_action("ACTION waves"), None);
        assert_eq!(ctcp_action("\x01ACTIONS x\x01"), None);
        assert_eq!(ctcp_action("\x01VERSION\x01"), None);
        assert_eq!(ctcp_action("\x01"), None);
        assert_eq!(ctcp_action(""), None);
    }

    #[test]
    fn queries() {
        assert_eq!(ctcp_query("\x01VERSION\x01"), Some(("VERSION", "")));
        assert_eq!(ctcp_query("\x01PING 12345\x01"), Some(("PING", "12345")));
        assert_eq!(ctcp_query("\x01TIME"), Some(("TIME", "")));
        assert_eq!(ctcp_query("\x01ACTION hi\x01"), None);
        assert_eq!(ctcp_query("\x01\x01"), None);
        assert_eq!(ctcp_query("\x01 x\x01"), None, "empty verb");
        assert_eq!(ctcp_query("hello"), None);
    }

    #[test]
    fn making_ctcp() {
        assert_eq!(make_action("waves"), "\x01ACTION waves\x01");
        assert_eq!(make_action("a\x01b\r\nc\x00"), "\x01ACTION abc\x01");
        assert_eq!(ctcp_action(&make_action("dances")), Some("dances"));
        assert_eq!(make_ctcp("VERSION", ""), "\x01VERSION\x01");
        assert_eq!(make_ctcp("PING", "42"), "\x01PING 42\x01");
        assert_eq!(
            ctcp_query(&make_ctcp("VERSION", "Estuary 0.1")),
            Some(("VERSION", "Estuary 0.1"))
        );
    }
}

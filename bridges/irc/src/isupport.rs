//! What the server told us about itself in RPL_ISUPPORT (numeric 005).
//!
//! IRC servers differ in which characters start a channel name, which status
//! prefixes exist (`~&@%+` or just `@+`), how names compare, and which channel
//! modes take a parameter. None of that can be guessed: a MODE line cannot even
//! be split into its changes without CHANMODES and PREFIX. So the bridge keeps
//! one [`Isupport`] per connection and feeds it every 005 line; the server may
//! send several, and may later withdraw a token with `-TOKEN`.
//!
//! Until a token is seen, the RFC 1459/2811 defaults apply (see each field).

use crate::casemap::Casemapping;

/// The membership prefixes of a server (`PREFIX=(qaohv)~&@%+`): each channel
/// status mode letter with the symbol shown before nicks, highest rank first.
///
/// The default, for servers that do not send PREFIX, is `(ov)@+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefixes {
    /// `(mode letter, symbol)`, highest rank first.
    entries: Vec<(char, char)>,
}

impl Default for Prefixes {
    fn default() -> Self {
        Prefixes {
            entries: vec![('o', '@'), ('v', '+')],
        }
    }
}

impl Prefixes {
    /// No membership prefixes at all (`PREFIX=`).
    pub fn none() -> Prefixes {
        Prefixes {
            entries: Vec::new(),
        }
    }

    /// Parse a PREFIX value such as `(qaohv)~&@%+`. An empty value means no
    /// prefixes. A malformed value (no parentheses, or a different number of
    /// modes and symbols) gives `None`, so that the caller keeps what it had
    /// rather than forgetting every status. A mode or symbol listed twice keeps
    /// its first (highest) rank.
    pub fn parse(value: &str) -> Option<Prefixes> {
        if value.is_empty() {
            return Some(Prefixes::none());
        }
        let rest = value.strip_prefix('(')?;
        let (modes, symbols) = rest.split_once(')')?;
        if modes.chars().count() != symbols.chars().count() {
            return None;
        }
        let mut entries: Vec<(char, char)> = Vec::new();
        for (mode, symbol) in modes.chars().zip(symbols.chars()) {
            if !entries.iter().any(|&(m, s)| m == mode || s == symbol) {
                entries.push((mode, symbol));
            }
        }
        Some(Prefixes { entries })
    }

    /// `(mode letter, symbol)` pairs, highest rank first.
    pub fn iter(&self) -> impl Iterator<Item = (char, char)> + '_ {
        self.entries.iter().copied()
    }

    /// The mode letters, highest rank first.
    pub fn modes(&self) -> impl Iterator<Item = char> + '_ {
        self.entries.iter().map(|&(m, _)| m)
    }

    /// The symbols, highest rank first.
    pub fn symbols(&self) -> impl Iterator<Item = char> + '_ {
        self.entries.iter().map(|&(_, s)| s)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The symbol shown for `mode` (`o` → `@`).
    pub fn symbol_for_mode(&self, mode: char) -> Option<char> {
        self.iter().find(|&(m, _)| m == mode).map(|(_, s)| s)
    }

    /// The mode letter behind `symbol` (`@` → `o`).
    pub fn mode_for_symbol(&self, symbol: char) -> Option<char> {
        self.iter().find(|&(_, s)| s == symbol).map(|(m, _)| m)
    }

    /// 0 for the highest-ranked mode, 1 for the next, …
    pub fn rank_of_mode(&self, mode: char) -> Option<usize> {
        self.modes().position(|m| m == mode)
    }

    /// 0 for the highest-ranked symbol, 1 for the next, …
    pub fn rank_of_symbol(&self, symbol: char) -> Option<usize> {
        self.symbols().position(|s| s == symbol)
    }

    pub fn has_mode(&self, mode: char) -> bool {
        self.rank_of_mode(mode).is_some()
    }

    pub fn is_symbol(&self, c: char) -> bool {
        self.rank_of_symbol(c).is_some()
    }

    /// The PREFIX spelling, `(ov)@+`.
    pub fn to_token_value(&self) -> String {
        if self.entries.is_empty() {
            return String::new();
        }
        format!(
            "({}){}",
            self.modes().collect::<String>(),
            self.symbols().collect::<String>()
        )
    }
}

/// How a channel mode letter uses parameters (the CHANMODES types, plus PREFIX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeKind {
    /// Type A: a list (`b`, `e`, `I`); always takes a mask (none only to query the list).
    List,
    /// Type B: always takes a parameter (`k`).
    AlwaysParam,
    /// Type C: takes a parameter only when set (`l`).
    ParamWhenSet,
    /// Type D: a flag, never a parameter (`m`, `t`).
    Flag,
    /// A PREFIX membership mode (`o`, `v`): always takes a nick.
    Prefix,
}

/// `CHANMODES=A,B,C,D`: which channel modes take parameters.
///
/// The default, for servers that do not send CHANMODES, is RFC 2811's
/// `beI,k,l,imnpst`. Groups beyond the fourth (reserved by the spec for the
/// future) are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChanModes {
    /// Type A: list modes.
    pub list: Vec<char>,
    /// Type B: always a parameter.
    pub always_param: Vec<char>,
    /// Type C: a parameter when set only.
    pub param_when_set: Vec<char>,
    /// Type D: flags.
    pub flag: Vec<char>,
}

impl Default for ChanModes {
    fn default() -> Self {
        ChanModes::parse("beI,k,l,imnpst")
    }
}

impl ChanModes {
    /// Parse a CHANMODES value; missing groups are empty.
    pub fn parse(value: &str) -> ChanModes {
        let mut groups = value.split(',').map(|g| g.chars().collect::<Vec<char>>());
        ChanModes {
            list: groups.next().unwrap_or_default(),
            always_param: groups.next().unwrap_or_default(),
            param_when_set: groups.next().unwrap_or_default(),
            flag: groups.next().unwrap_or_default(),
        }
    }

    /// Which group `mode` is in (PREFIX modes are not part of CHANMODES).
    pub fn kind(&self, mode: char) -> Option<ModeKind> {
        if self.list.contains(&mode) {
            Some(ModeKind::List)
        } else if self.always_param.contains(&mode) {
            Some(ModeKind::AlwaysParam)
        } else if self.param_when_set.contains(&mode) {
            Some(ModeKind::ParamWhenSet)
        } else if self.flag.contains(&mode) {
            Some(ModeKind::Flag)
        } else {
            None
        }
    }
}

/// Everything learnt from the server's 005 lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isupport {
    /// `CHANTYPES`: the characters that start a channel name. Default `#&`;
    /// an empty value means the server has no channels.
    pub chantypes: Vec<char>,
    /// `PREFIX`; see [`Prefixes`].
    pub prefix: Prefixes,
    /// `CASEMAPPING`; see [`Casemapping`] for the fallback of unknown values.
    pub casemapping: Casemapping,
    /// `NETWORK`: the network's human name (`Libera.Chat`), for room and server names.
    pub network: Option<String>,
    /// `CHANMODES`; see [`ChanModes`].
    pub chanmodes: ChanModes,
    /// `NICKLEN`: longest nick the server accepts, in bytes.
    pub nicklen: Option<usize>,
    /// `TOPICLEN`: longest topic; `None` when unknown or unlimited.
    pub topiclen: Option<usize>,
    /// `LINELEN`: the line length limit when the server raised it above 512.
    pub linelen: Option<usize>,
    /// `MODES`: parameter-taking mode changes per MODE command.
    modes_per_line: usize,
    /// `MONITOR`: how many nicks the server follows for the user (IRCv3
    /// MONITOR); `None` when it has no MONITOR, `usize::MAX` when unlimited.
    pub monitor: Option<usize>,
    /// `CHATHISTORY`: the server serves its channel history (IRCv3
    /// draft/chathistory), up to this many messages a request (0: no limit).
    pub chathistory: Option<usize>,
    /// `CLIENTTAGDENY`: the client-only tags the server drops, named
    /// without their `+`; `*` is every one, and `-name` an exception to it.
    client_tag_deny: Vec<String>,
    // No map of every token: each IRC connection keeps its own `Isupport`,
    // and a server advertises some forty tokens, of which these are used.
}

impl Default for Isupport {
    fn default() -> Self {
        Isupport {
            chantypes: vec!['#', '&'],
            prefix: Prefixes::default(),
            casemapping: Casemapping::default(),
            network: None,
            chanmodes: ChanModes::default(),
            nicklen: None,
            topiclen: None,
            linelen: None,
            // RFC 1459's limit, when not advertised.
            modes_per_line: 3,
            monitor: None,
            chathistory: None,
            client_tag_deny: Vec::new(),
        }
    }
}

impl Isupport {
    /// The defaults, before any 005 line.
    pub fn new() -> Isupport {
        Isupport::default()
    }

    /// Apply the tokens of one 005 line: its parameters without the leading
    /// client nick (`line.params[1..]`). A parameter containing whitespace is
    /// skipped: a token never has any (values escape spaces as `\x20`), while
    /// the closing `are supported by this server` always does, so the caller
    /// may leave that last parameter in or take it out.
    pub fn apply_reply<S: AsRef<str>>(&mut self, tokens: &[S]) {
        for token in tokens {
            let token = token.as_ref();
            if !token.chars().any(char::is_whitespace) {
                self.apply_token(token);
            }
        }
    }

    /// Apply one token: `NAME`, `NAME=VALUE` or `-NAME` (withdrawn: back to the default).
    pub fn apply_token(&mut self, token: &str) {
        if let Some(name) = token.strip_prefix('-') {
            if !name.is_empty() {
                self.reset(name);
            }
            return;
        }
        let (name, value) = match token.split_once('=') {
            Some((name, value)) => (name, unescape_value(value)),
            None => (token, String::new()),
        };
        if name.is_empty() {
            return;
        }
        match name {
            "CHANTYPES" => self.chantypes = value.chars().collect(),
            "PREFIX" => {
                if let Some(prefixes) = Prefixes::parse(&value) {
                    self.prefix = prefixes;
                }
            }
            "CASEMAPPING" => self.casemapping = Casemapping::from_token(&value),
            "NETWORK" => self.network = Some(value.clone()).filter(|v| !v.is_empty()),
            "CHANMODES" => self.chanmodes = ChanModes::parse(&value),
            "NICKLEN" => self.nicklen = parse_len(&value),
            "TOPICLEN" => self.topiclen = parse_len(&value),
            "LINELEN" => self.linelen = parse_len(&value),
            // Unlimited when advertised without a value.
            "MODES" if value.is_empty() => self.modes_per_line = usize::MAX,
            "MODES" => self.modes_per_line = value.parse().ok().filter(|&n| n > 0).unwrap_or(3),
            "MONITOR" => self.monitor = Some(value.parse().unwrap_or(usize::MAX)),
            "CHATHISTORY" => self.chathistory = Some(value.parse().unwrap_or(0)),
            "CLIENTTAGDENY" => {
                self.client_tag_deny = value
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            _ => {}
        }
    }

    /// Put the field behind token `name` back to its default.
    fn reset(&mut self, name: &str) {
        let default = Isupport::default();
        match name {
            "CHANTYPES" => self.chantypes = default.chantypes,
            "PREFIX" => self.prefix = default.prefix,
            "CASEMAPPING" => self.casemapping = default.casemapping,
            "NETWORK" => self.network = default.network,
            "CHANMODES" => self.chanmodes = default.chanmodes,
            "NICKLEN" => self.nicklen = default.nicklen,
            "TOPICLEN" => self.topiclen = default.topiclen,
            "LINELEN" => self.linelen = default.linelen,
            "MODES" => self.modes_per_line = default.modes_per_line,
            "MONITOR" => self.monitor = default.monitor,
            "CHATHISTORY" => self.chathistory = default.chathistory,
            "CLIENTTAGDENY" => self.client_tag_deny = default.client_tag_deny,
            _ => {}
        }
    }

    /// Whether the server passes on the client-only tag `name` (`+typing`).
    pub fn allows_client_tag(&self, name: &str) -> bool {
        let name = name.trim_start_matches('+');
        if self.client_tag_deny.iter().any(|t| t == "*") {
            self.client_tag_deny
                .iter()
                .any(|t| t.strip_prefix('-') == Some(name))
        } else {
            !self.client_tag_deny.iter().any(|t| t == name)
        }
    }

    /// Whether `name` is a channel name on this server (starts with a CHANTYPES character).
    pub fn is_channel(&self, name: &str) -> bool {
        name.chars()
            .next()
            .is_some_and(|c| self.chantypes.contains(&c))
    }

    /// `name` folded with the server's case mapping, for use as a key.
    pub fn fold(&self, name: &str) -> String {
        self.casemapping.fold(name)
    }

    /// How channel mode `mode` takes parameters; PREFIX modes win over CHANMODES.
    pub fn mode_kind(&self, mode: char) -> Option<ModeKind> {
        if self.prefix.has_mode(mode) {
            Some(ModeKind::Prefix)
        } else {
            self.chanmodes.kind(mode)
        }
    }

    /// Whether `mode` consumes a parameter in a MODE change that sets
    /// (`adding`) or unsets it. Unknown modes are taken as flags, as most
    /// clients do: the alternative, guessing a parameter, would shift every
    /// following parameter.
    pub fn mode_takes_param(&self, mode: char, adding: bool) -> bool {
        match self.mode_kind(mode) {
            Some(ModeKind::Prefix | ModeKind::List | ModeKind::AlwaysParam) => true,
            Some(ModeKind::ParamWhenSet) => adding,
            Some(ModeKind::Flag) | None => false,
        }
    }

    /// `MODES`: how many parameter-taking mode changes fit in one MODE command.
    /// 3 when not advertised (RFC 1459), unlimited (`usize::MAX`) when
    /// advertised without a value.
    pub fn modes_per_line(&self) -> usize {
        self.modes_per_line
    }
}

/// A length token's value; empty or malformed means unknown.
fn parse_len(value: &str) -> Option<usize> {
    value.parse().ok()
}

/// Undo ISUPPORT value escaping: `\xHH` is the byte HH (`\x20` a space,
/// `\x5C` a backslash, `\x3D` an equals sign). Anything else, including a
/// backslash not followed by `x` and two hex digits, is kept as it is. The
/// bytes are read as UTF-8, invalid sequences replaced.
pub fn unescape_value(value: &str) -> String {
    if !value.contains('\\') {
        return value.to_owned();
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            let hex = bytes
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(tokens: &[&str]) -> Isupport {
        let mut isupport = Isupport::new();
        for token in tokens {
            isupport.apply_token(token);
        }
        isupport
    }

    #[test]
    fn defaults() {
        let i = Isupport::new();
        assert_eq!(i.chantypes, vec!['#', '&']);
        assert_eq!(i.prefix.to_token_value(), "(ov)@+");
        assert_eq!(i.casemapping, Casemapping::Rfc1459);
        assert_eq!(i.network, None);
        assert_eq!(i.chanmodes.list, vec!['b', 'e', 'I']);
        assert_eq!(i.chanmodes.always_param, vec!['k']);
        assert_eq!(i.chanmodes.param_when_set, vec!['l']);
        assert_eq!(i.nicklen, None);
        assert_eq!(i.topiclen, None);
        assert_eq!(i.linelen, None);
        assert_eq!(i.modes_per_line(), 3);
        assert_eq!(i.monitor, None);
        assert_eq!(apply(&["MONITOR"]).monitor, Some(usize::MAX));
        assert_eq!(apply(&["MONITOR=5", "-MONITOR"]).monitor, None);
        assert_eq!(i.chathistory, None);
        assert_eq!(apply(&["CHATHISTORY=100"]).chathistory, Some(100));
        assert!(i.allows_client_tag("+typing"));
        let deny_all = apply(&["CLIENTTAGDENY=*,-typing"]);
        assert!(deny_all.allows_client_tag("+typing"));
        assert!(!deny_all.allows_client_tag("+draft/react"));
        let deny_some = apply(&["CLIENTTAGDENY=typing"]);
        assert!(!deny_some.allows_client_tag("+typing"));
        assert!(deny_some.allows_client_tag("+draft/react"));
        assert!(i.is_channel("#rust") && i.is_channel("&local"));
        assert!(!i.is_channel("nick") && !i.is_channel("") && !i.is_channel("!chan"));
    }

    #[test]
    fn libera_style_reply() {
        let mut i = Isupport::new();
        i.apply_reply(&[
            "CALLERID=g",
            "WHOX",
            "ETRACE",
            "FNC",
            "SAFELIST",
            "ELIST=CMNTU",
            "KNOCK",
            "MONITOR=100",
            "CHANTYPES=#",
            "EXCEPTS",
            "INVEX",
            "CHANMODES=eIbq,k,flj,CFLMPQRSTcgimnprstuz",
            "are supported by this server",
        ]);
        i.apply_reply(&[
            "CHANLIMIT=#:250",
            "PREFIX=(ov)@+",
            "MAXLIST=bqeI:100",
            "MODES=4",
            "NETWORK=Libera.Chat",
            "STATUSMSG=@+",
            "CASEMAPPING=rfc1459",
            "NICKLEN=16",
            "MAXNICKLEN=16",
            "CHANNELLEN=50",
            "TOPICLEN=390",
            "DEAF=D",
        ]);
        assert_eq!(i.chantypes, vec!['#']);
        assert!(!i.is_channel("&x"));
        assert_eq!(i.network.as_deref(), Some("Libera.Chat"));
        assert_eq!(i.nicklen, Some(16));
        assert_eq!(i.topiclen, Some(390));
        assert_eq!(i.modes_per_line(), 4);
        assert_eq!(i.monitor, Some(100));
        assert_eq!(i.chanmodes.list, vec!['e', 'I', 'b', 'q']);
        assert_eq!(i.chanmodes.param_when_set, vec!['f', 'l', 'j']);
        assert_eq!(i.mode_kind('q'), Some(ModeKind::List));
        assert_eq!(i.mode_kind('o'), Some(ModeKind::Prefix));
        assert_eq!(i.mode_kind('z'), Some(ModeKind::Flag));
        assert_eq!(i.mode_kind('Z'), None);
    }

    #[test]
    fn prefix_ranks() {
        let i = apply(&["PREFIX=(qaohv)~&@%+"]);
        let p = &i.prefix;
        assert_eq!(p.len(), 5);
        assert_eq!(p.modes().collect::<String>(), "qaohv");
        assert_eq!(p.symbols().collect::<String>(), "~&@%+");
        assert_eq!(p.symbol_for_mode('h'), Some('%'));
        assert_eq!(p.mode_for_symbol('&'), Some('a'));
        assert_eq!(p.rank_of_mode('q'), Some(0));
        assert_eq!(p.rank_of_symbol('+'), Some(4));
        assert_eq!(p.symbol_for_mode('b'), None);
        assert!(p.is_symbol('%') && !p.is_symbol('#'));
        assert_eq!(p.to_token_value(), "(qaohv)~&@%+");
    }

    #[test]
    fn prefix_edge_cases() {
        assert_eq!(Prefixes::parse(""), Some(Prefixes::none()));
        assert_eq!(Prefixes::parse("()"), Some(Prefixes::none()));
        assert_eq!(Prefixes::parse("(ov)@"), None, "length mismatch");
        assert_eq!(Prefixes::parse("ov@+"), None, "no parentheses");
        assert_eq!(Prefixes::parse("(ov@+"), None, "unclosed");
        let dup = Prefixes::parse("(oov)@@+").unwrap();
        assert_eq!(dup.to_token_value(), "(ov)@+");
        // A malformed PREFIX keeps what was known.
        let i = apply(&["PREFIX=(qov)~@+", "PREFIX=(ov)@"]);
        assert_eq!(i.prefix.to_token_value(), "(qov)~@+");
        // An empty one removes every prefix, and so does a bare PREFIX.
        assert!(apply(&["PREFIX="]).prefix.is_empty());
        assert!(apply(&["PREFIX"]).prefix.is_empty());
        assert_eq!(Prefixes::none().to_token_value(), "");
    }

    #[test]
    fn casemapping_tokens() {
        assert_eq!(
            apply(&["CASEMAPPING=ascii"]).casemapping,
            Casemapping::Ascii
        );
        assert_eq!(
            apply(&["CASEMAPPING=strict-rfc1459"]).casemapping,
            Casemapping::StrictRfc1459
        );
        assert_eq!(
            apply(&["CASEMAPPING=rfc7613"]).casemapping,
            Casemapping::Rfc7613
        );
        assert_eq!(
            apply(&["CASEMAPPING=weird"]).casemapping,
            Casemapping::Rfc1459
        );
        let i = apply(&["CASEMAPPING=ascii"]);
        assert_eq!(i.fold("#Chan[1]"), "#chan[1]");
    }

    #[test]
    fn negation_restores_defaults() {
        let mut i = apply(&[
            "CHANTYPES=#",
            "PREFIX=(qaohv)~&@%+",
            "CASEMAPPING=ascii",
            "NETWORK=Example",
            "CHANMODES=b,k,l,mnt",
            "NICKLEN=30",
            "TOPICLEN=300",
            "LINELEN=2048",
            "MODES=6",
            "EXCEPTS",
        ]);
        assert_eq!(i.linelen, Some(2048));
        for token in [
            "-CHANTYPES",
            "-PREFIX",
            "-CASEMAPPING",
            "-NETWORK",
            "-CHANMODES",
            "-NICKLEN",
            "-TOPICLEN",
            "-LINELEN",
            "-MODES",
            "-EXCEPTS",
        ] {
            i.apply_token(token);
        }
        assert_eq!(i, Isupport::new());
        // Withdrawing something never advertised, or nothing, is harmless.
        i.apply_token("-UNKNOWN");
        i.apply_token("-");
        i.apply_token("");
        i.apply_token("=value");
        assert_eq!(i, Isupport::new());
    }

    #[test]
    fn later_lines_override_earlier() {
        let i = apply(&["NICKLEN=9", "NICKLEN=31", "NETWORK=A", "NETWORK=B"]);
        assert_eq!(i.nicklen, Some(31));
        assert_eq!(i.network.as_deref(), Some("B"));
    }

    #[test]
    fn escaped_values() {
        let i = apply(&["NETWORK=Example\\x20Net\\x5Cwork\\x3d1"]);
        assert_eq!(i.network.as_deref(), Some("Example Net\\work=1"));
        assert_eq!(unescape_value("plain"), "plain");
        assert_eq!(unescape_value("a\\x2"), "a\\x2", "truncated escape kept");
        assert_eq!(unescape_value("a\\xZZb"), "a\\xZZb", "non-hex kept");
        assert_eq!(unescape_value("a\\nb"), "a\\nb", "other escapes kept");
        assert_eq!(unescape_value("\\"), "\\");
        assert_eq!(
            unescape_value("\\xC3\\xA9t\\xC3\\xA9"),
            "été",
            "UTF-8 bytes"
        );
        assert_eq!(
            unescape_value("\\xFF"),
            "\u{FFFD}",
            "invalid UTF-8 replaced"
        );
        assert_eq!(unescape_value("é\\x21"), "é!", "non-ASCII around escapes");
        // Only the first `=` separates name and value.
        let i = apply(&["NETWORK=a=b"]);
        assert_eq!(i.network.as_deref(), Some("a=b"));
    }

    #[test]
    fn modes_per_line_is_three_unless_advertised() {
        assert_eq!(apply(&[]).modes_per_line(), 3);
        assert_eq!(apply(&["MODES"]).modes_per_line(), usize::MAX);
        assert_eq!(apply(&["MODES=x"]).modes_per_line(), 3);
        assert_eq!(apply(&["MODES=6", "-MODES"]).modes_per_line(), 3);
    }

    #[test]
    fn lengths() {
        let i = apply(&["NICKLEN=abc", "TOPICLEN=", "LINELEN=4096"]);
        assert_eq!(i.nicklen, None);
        assert_eq!(i.topiclen, None);
        assert_eq!(i.linelen, Some(4096));
        assert_eq!(apply(&["NICKLEN=-1"]).nicklen, None);
        assert_eq!(apply(&["MODES"]).modes_per_line(), usize::MAX);
        assert_eq!(apply(&["MODES=x"]).modes_per_line(), 3);
        assert_eq!(apply(&["MODES=0"]).modes_per_line(), 3);
    }

    #[test]
    fn chanmodes_parsing() {
        let c = ChanModes::parse("b");
        assert_eq!(c.list, vec!['b']);
        assert!(c.always_param.is_empty() && c.param_when_set.is_empty() && c.flag.is_empty());
        let c = ChanModes::parse("b,k,l,imnt,XYZ");
        assert_eq!(c.flag, vec!['i', 'm', 'n', 't']);
        assert_eq!(c.kind('X'), None, "fifth group ignored");
        let c = ChanModes::parse("");
        assert_eq!(c.kind('b'), None);
    }

    #[test]
    fn params_by_kind() {
        let i = apply(&["PREFIX=(qaohv)~&@%+", "CHANMODES=beI,k,l,imnpst"]);
        for (mode, on_set, on_unset) in [
            ('q', true, true),
            ('o', true, true),
            ('b', true, true),
            ('k', true, true),
            ('l', true, false),
            ('m', false, false),
            ('?', false, false),
        ] {
            assert_eq!(i.mode_takes_param(mode, true), on_set, "+{mode}");
            assert_eq!(i.mode_takes_param(mode, false), on_unset, "-{mode}");
        }
    }

    #[test]
    fn empty_chantypes_means_no_channels() {
        let i = apply(&["CHANTYPES="]);
        assert!(i.chantypes.is_empty());
        assert!(!i.is_channel("#x"));
    }
}

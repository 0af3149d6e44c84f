//! A raw, line-based IRC client for driving the IRC side of tests.
//!
//! It does as little as possible on its own: registration (with optional
//! IRCv3 capabilities), answering server PINGs, and following its own nick
//! changes. Everything else is plain lines; tests match them with
//! `contains`/prefix checks or with [`IrcLine::parse`].

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::inspircd::{OPER_NAME, OPER_PASSWORD};

/// How long registration, [`IrcClient::join`], [`IrcClient::names`] and
/// [`IrcClient::oper`] wait for the server. Generous: load tests register
/// ~100 clients at once on a 2-core machine.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The capabilities a modern client (and the bridge) would use; pass to
/// [`IrcClient::connect_with_caps`].
pub const MODERN_CAPS: &[&str] = &["server-time", "message-tags", "echo-message"];

/// A registered IRC connection to 127.0.0.1.
pub struct IrcClient {
    stream: TcpStream,
    nick: String,
    /// Bytes read but not yet split into lines.
    inbuf: Vec<u8>,
    /// Lines read while `expect` looked for something else.
    backlog: VecDeque<Vec<u8>>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
    /// `CAP LS` tokens (`name` or `name=value`).
    caps_offered: Vec<String>,
    /// Capabilities the server ACKed.
    caps_enabled: Vec<String>,
    /// Everything from registration up to the end of the MOTD.
    welcome: Vec<String>,
    /// Acknowledge every read at once (see [`IrcClient::acknowledge_at_once`]).
    quick_acks: bool,
}

impl IrcClient {
    /// Connects to 127.0.0.1:`port` and registers as `nick` (user `nick`,
    /// realname `nick`), without enabling any capability, so lines arrive
    /// without tags. Returns after the end of the MOTD (376/422); the
    /// welcome burst is in [`IrcClient::welcome`], not in the backlog.
    ///
    /// Panics if registration fails (nick in use, connection refused, ...).
    pub async fn connect(port: u16, nick: &str) -> IrcClient {
        Self::connect_with_caps(port, nick, &[]).await
    }

    /// Like [`IrcClient::connect`], also requesting those of `caps` the
    /// server offers (see [`MODERN_CAPS`]); check [`IrcClient::has_cap`].
    pub async fn connect_with_caps(port: u16, nick: &str, caps: &[&str]) -> IrcClient {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("{nick}: connect to 127.0.0.1:{port}: {e}"));
        let mut client = IrcClient {
            stream,
            nick: nick.to_owned(),
            inbuf: Vec::new(),
            backlog: VecDeque::new(),
            closed: None,
            caps_offered: Vec::new(),
            caps_enabled: Vec::new(),
            welcome: Vec::new(),
            quick_acks: false,
        };
        let deadline = Instant::now() + REPLY_TIMEOUT;
        client.send("CAP LS 302").await;
        client.send(&format!("NICK {nick}")).await;
        client.send(&format!("USER {nick} 0 * :{nick}")).await;
        client.negotiate_caps(caps, deadline).await;
        client.send("CAP END").await;
        client.await_welcome(deadline).await;
        client
    }

    /// Acknowledge what this client reads at once, for load measurements.
    ///
    /// InspIRCd leaves Nagle's algorithm on, so a line it writes while an
    /// earlier one is unacknowledged waits for this client's ACK, which
    /// Linux delays by up to 40 ms. A load tool's receiving client would put
    /// those stalls into figures that are not its own; the gateway avoids
    /// them the same way on its IRC connections.
    pub fn acknowledge_at_once(&mut self) {
        self.quick_acks = true;
    }

    /// Our current nick (follows our own NICK changes).
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// Tokens of the server's `CAP LS 302` reply, `name` or `name=value`.
    pub fn caps_offered(&self) -> &[String] {
        &self.caps_offered
    }

    /// Whether the server offered capability `name` (with or without a
    /// value).
    pub fn offers_cap(&self, name: &str) -> bool {
        self.caps_offered
            .iter()
            .any(|cap| cap.split('=').next() == Some(name))
    }

    /// Capabilities the server acknowledged.
    pub fn caps_enabled(&self) -> &[String] {
        &self.caps_enabled
    }

    /// Whether capability `name` is enabled on this connection.
    pub fn has_cap(&self, name: &str) -> bool {
        self.caps_enabled.iter().any(|cap| cap == name)
    }

    /// All lines from connecting up to the end of the MOTD.
    pub fn welcome(&self) -> &[String] {
        &self.welcome
    }

    /// An ISUPPORT (005) token from the welcome burst: `Some("")` for a
    /// bare flag, `Some(value)` for `KEY=value`, `None` if absent.
    pub fn isupport(&self, key: &str) -> Option<String> {
        self.welcome
            .iter()
            .map(|line| IrcLine::parse(line))
            .filter(|line| line.command == "005")
            // Skip our nick; the last parameter is the human-readable text.
            .flat_map(|line| {
                let n = line.params.len();
                line.params
                    .into_iter()
                    .take(n.saturating_sub(1))
                    .skip(1)
                    .collect::<Vec<_>>()
            })
            .find_map(|token| match token.split_once('=') {
                Some((k, v)) if k == key => Some(v.to_owned()),
                None if token == key => Some(String::new()),
                _ => None,
            })
    }

    /// Sends one line; CRLF is appended. Panics if `line` contains CR or
    /// LF (use [`IrcClient::send_bytes`] for deliberately broken input) or
    /// if the connection is broken.
    pub async fn send(&mut self, line: &str) {
        assert!(
            !line.contains(['\r', '\n']),
            "{}: line to send contains CR/LF: {line:?}",
            self.nick
        );
        self.send_bytes(line.as_bytes()).await;
    }

    /// Sends `raw` verbatim plus CRLF (e.g. invalid UTF-8).
    pub async fn send_bytes(&mut self, raw: &[u8]) {
        let mut buf = Vec::with_capacity(raw.len() + 2);
        buf.extend_from_slice(raw);
        buf.extend_from_slice(b"\r\n");
        if let Err(e) = self.stream.write_all(&buf).await {
            panic!(
                "{}: send {:?}: {e}",
                self.nick,
                String::from_utf8_lossy(raw)
            );
        }
    }

    /// `PRIVMSG target :text`.
    pub async fn privmsg(&mut self, target: &str, text: &str) {
        self.send(&format!("PRIVMSG {target} :{text}")).await;
    }

    /// The next unconsumed line (lossy UTF-8, without CRLF): the oldest
    /// one `expect` set aside, or else the next from the server. `None` on
    /// timeout or once the connection has ended.
    pub async fn recv_line(&mut self, timeout: Duration) -> Option<String> {
        self.recv_raw(timeout).await.map(lossy)
    }

    /// Like [`IrcClient::recv_line`], but the exact bytes.
    pub async fn recv_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        if let Some(line) = self.backlog.pop_front() {
            return Some(line);
        }
        let deadline = Instant::now() + timeout;
        timeout_at(deadline, self.read()).await.ok().flatten()
    }

    /// Returns the first line matching `pred`, looking at set-aside lines
    /// first and then reading from the server. Lines that do not match are
    /// set aside for later `expect`/`recv_line` calls.
    ///
    /// Panics on timeout or end of connection, listing what did arrive.
    pub async fn expect(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let raw = self.expect_raw(timeout, |raw| pred(&lossy_ref(raw))).await;
        lossy(raw)
    }

    /// Like [`IrcClient::expect`], matching on the exact bytes.
    pub async fn expect_raw(&mut self, timeout: Duration, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        if let Some(i) = self.backlog.iter().position(|l| pred(l)) {
            return self.backlog.remove(i).expect("index from position");
        }
        let deadline = Instant::now() + timeout;
        loop {
            match timeout_at(deadline, self.read()).await {
                Ok(Some(line)) if pred(&line) => return line,
                Ok(Some(line)) => self.backlog.push_back(line),
                Ok(None) => self.fail_expect("the connection ended"),
                Err(_) => self.fail_expect(&format!("nothing matched within {timeout:?}")),
            }
        }
    }

    /// Waits `timeout` and panics if a line matching `pred` arrives (or
    /// was set aside). Other lines are set aside as usual.
    pub async fn expect_none(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) {
        if let Some(line) = self.backlog.iter().find(|l| pred(&lossy_ref(l))) {
            panic!("{}: unexpected line: {}", self.nick, lossy_ref(line));
        }
        let deadline = Instant::now() + timeout;
        while let Ok(Some(line)) = timeout_at(deadline, self.read()).await {
            let text = lossy_ref(&line).into_owned();
            assert!(!pred(&text), "{}: unexpected line: {text}", self.nick);
            self.backlog.push_back(line);
        }
    }

    /// Removes and returns every set-aside line.
    pub fn take_backlog(&mut self) -> Vec<String> {
        self.backlog.drain(..).map(lossy).collect()
    }

    /// Joins `chan`, waits for the end of NAMES (366) and returns the
    /// NAMES entries (with prefixes, e.g. `@alice`). Our own JOIN echo and
    /// the NAMES replies are consumed; anything else (topic, modes) stays
    /// in the backlog. Panics if the server refuses the join.
    pub async fn join(&mut self, chan: &str) -> Vec<String> {
        self.send(&format!("JOIN {chan}")).await;
        let own_join = |line: &IrcLine, nick: &str| {
            line.command == "JOIN"
                && line.nick().is_some_and(|n| n.eq_ignore_ascii_case(nick))
                && line.param(0).is_some_and(|c| c.eq_ignore_ascii_case(chan))
        };
        let nick = self.nick.clone();
        let line = self
            .expect(REPLY_TIMEOUT, |l| {
                own_join(&IrcLine::parse(l), &nick) || is_error_for(l, chan)
            })
            .await;
        assert!(
            !is_error_for(&line, chan),
            "{nick}: cannot join {chan}: {line}"
        );
        self.collect_names(chan).await
    }

    /// Sends `NAMES chan` and returns the entries, e.g. `~&@%+bob` with
    /// multi-prefix or `bob!bob@127.0.0.1` with userhost-in-names.
    pub async fn names(&mut self, chan: &str) -> Vec<String> {
        self.send(&format!("NAMES {chan}")).await;
        self.collect_names(chan).await
    }

    /// Becomes IRC operator with the world's oper account (381). Opers
    /// can set channel modes anywhere (override) and use SAMODE, SAKICK,
    /// SAJOIN, KILL, CHGHOST, ...
    pub async fn oper(&mut self) {
        self.send(&format!("OPER {OPER_NAME} {OPER_PASSWORD}"))
            .await;
        let line = self
            .expect(REPLY_TIMEOUT, |l| {
                matches!(IrcLine::parse(l).command.as_str(), "381" | "464" | "491")
            })
            .await;
        assert_eq!(
            IrcLine::parse(&line).command,
            "381",
            "{}: OPER refused: {line}",
            self.nick
        );
    }

    /// Sends QUIT and waits (briefly) for the server to close the
    /// connection.
    pub async fn quit(mut self, reason: &str) {
        self.send(&format!("QUIT :{reason}")).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(Some(_)) = timeout_at(deadline, self.read()).await {}
    }

    /// True once the server closed the connection or it broke.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Reads CAP LS (possibly multi-line), requests the wanted caps that
    /// are offered and waits for the ACK/NAK.
    async fn negotiate_caps(&mut self, wanted: &[&str], deadline: Instant) {
        loop {
            let line = self.registration_line(deadline, "CAP LS").await;
            if line.command != "CAP" || line.param(1) != Some("LS") {
                continue;
            }
            // `CAP * LS * :caps` continues, `CAP * LS :caps` ends.
            let more = line.params.len() > 3 && line.param(2) == Some("*");
            let caps = line.trailing().unwrap_or_default();
            self.caps_offered
                .extend(caps.split(' ').filter(|c| !c.is_empty()).map(str::to_owned));
            if !more {
                break;
            }
        }
        let request: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|cap| self.offers_cap(cap))
            .collect();
        if request.is_empty() {
            return;
        }
        self.send(&format!("CAP REQ :{}", request.join(" "))).await;
        loop {
            let line = self.registration_line(deadline, "CAP ACK").await;
            if line.command != "CAP" {
                continue;
            }
            match line.param(1) {
                Some("ACK") => {
                    let caps = line.trailing().unwrap_or_default();
                    self.caps_enabled
                        .extend(caps.split(' ').filter(|c| !c.is_empty()).map(str::to_owned));
                    return;
                }
                Some("NAK") => panic!("{}: server refused CAP REQ {request:?}", self.nick),
                _ => {}
            }
        }
    }

    /// Waits for 001 and then for the end of the MOTD.
    async fn await_welcome(&mut self, deadline: Instant) {
        let mut registered = false;
        loop {
            let line = self.registration_line(deadline, "001 and MOTD").await;
            match line.command.as_str() {
                "001" => {
                    registered = true;
                    // The server may have truncated or changed our nick.
                    if let Some(nick) = line.param(0) {
                        self.nick = nick.to_owned();
                    }
                }
                "376" | "422" if registered => return,
                "431" | "432" | "433" | "436" | "437" | "465" | "ERROR" if !registered => {
                    self.fail_registration(&format!("server refused registration: {}", line.raw()))
                }
                _ => {}
            }
        }
    }

    /// Reads the next line during registration, recording it in the
    /// welcome burst. Panics on timeout or disconnect.
    async fn registration_line(&mut self, deadline: Instant, waiting_for: &str) -> IrcLine {
        match timeout_at(deadline, self.read()).await {
            Ok(Some(raw)) => {
                let text = lossy(raw);
                let line = IrcLine::parse(&text);
                self.welcome.push(text);
                line
            }
            Ok(None) => {
                self.fail_registration(&format!("connection ended while waiting for {waiting_for}"))
            }
            Err(_) => self.fail_registration(&format!(
                "timed out after {REPLY_TIMEOUT:?} waiting for {waiting_for}"
            )),
        }
    }

    /// Collects 353 entries for `chan` up to its 366.
    async fn collect_names(&mut self, chan: &str) -> Vec<String> {
        let mut names = Vec::new();
        loop {
            let line = self
                .expect(REPLY_TIMEOUT, |l| {
                    let line = IrcLine::parse(l);
                    match line.command.as_str() {
                        // 353 me = #chan :names / 366 me #chan :End
                        "353" => line.param(2).is_some_and(|c| c.eq_ignore_ascii_case(chan)),
                        "366" => line.param(1).is_some_and(|c| c.eq_ignore_ascii_case(chan)),
                        _ => false,
                    }
                })
                .await;
            let line = IrcLine::parse(&line);
            if line.command == "366" {
                return names;
            }
            let entries = line.trailing().unwrap_or_default();
            names.extend(
                entries
                    .split(' ')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
            );
        }
    }

    /// Reads the next line from the server (without CRLF), or `None` once
    /// the connection has ended. Server PINGs are answered and not
    /// returned; our own NICK changes update [`IrcClient::nick`].
    ///
    /// Cancel-safe: partial lines stay in `inbuf`.
    async fn read(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(line) = self.next_buffered_line() {
                let text = lossy_ref(&line);
                let parsed = IrcLine::parse(&text);
                match parsed.command.as_str() {
                    "PING" => {
                        let token = parsed.params.join(" ");
                        // Best effort: the server may just have closed.
                        let _ = self
                            .stream
                            .write_all(format!("PONG :{token}\r\n").as_bytes())
                            .await;
                        continue;
                    }
                    "NICK"
                        if parsed
                            .nick()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&self.nick)) =>
                    {
                        if let Some(new) = parsed.param(0) {
                            self.nick = new.to_owned();
                        }
                    }
                    _ => {}
                }
                return Some(line);
            }
            if self.closed.is_some() {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) => self.closed = Some("connection closed by the server".into()),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    if self.quick_acks {
                        // Not sticky: the kernel falls back to delayed ACKs.
                        let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
                    }
                }
                Err(e) => self.closed = Some(format!("connection error: {e}")),
            }
        }
    }

    /// Splits one line off `inbuf`; after the connection ended, an
    /// unterminated rest counts as a line too.
    fn next_buffered_line(&mut self) -> Option<Vec<u8>> {
        let line = match self.inbuf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let mut line: Vec<u8> = self.inbuf.drain(..=i).collect();
                line.pop();
                line
            }
            None if self.closed.is_some() && !self.inbuf.is_empty() => {
                std::mem::take(&mut self.inbuf)
            }
            None => return None,
        };
        let mut line = line;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(line)
    }

    fn fail_registration(&self, why: &str) -> ! {
        panic!(
            "{}: IRC registration failed: {why}{}.\nReceived ({}):\n{}",
            self.nick,
            self.closed_reason(),
            self.welcome.len(),
            self.welcome.join("\n")
        );
    }

    fn fail_expect(&self, why: &str) -> ! {
        let received: Vec<String> = self
            .backlog
            .iter()
            .map(|l| lossy_ref(l).into_owned())
            .collect();
        panic!(
            "{}: expected IRC line not received: {why}{}.\nUnmatched lines ({}):\n{}",
            self.nick,
            self.closed_reason(),
            received.len(),
            received.join("\n")
        );
    }

    fn closed_reason(&self) -> String {
        self.closed
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    }
}

/// One parsed IRC line: `@tags :prefix COMMAND params... :trailing`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IrcLine {
    /// Message tags in order, values unescaped; `""` for valueless tags.
    pub tags: Vec<(String, String)>,
    /// Source without the `:`, e.g. `nick!user@host` or `irc.localhost`.
    pub prefix: Option<String>,
    /// Command as sent (servers send upper case) or a 3-digit numeric.
    pub command: String,
    /// Middle parameters plus the trailing one (without its `:`).
    pub params: Vec<String>,
    raw: String,
}

impl IrcLine {
    /// Parses a line (a trailing CR/LF is ignored). Never fails: garbage
    /// gives an empty or odd command.
    pub fn parse(line: &str) -> IrcLine {
        let raw = line.trim_end_matches(['\r', '\n']);
        let mut rest = raw;
        let mut tags = Vec::new();
        if let Some(after) = rest.strip_prefix('@') {
            let (tag_str, tail) = after.split_once(' ').unwrap_or((after, ""));
            tags = tag_str
                .split(';')
                .filter(|t| !t.is_empty())
                .map(|t| match t.split_once('=') {
                    Some((k, v)) => (k.to_owned(), unescape_tag(v)),
                    None => (t.to_owned(), String::new()),
                })
                .collect();
            rest = tail;
        }
        rest = rest.trim_start_matches(' ');
        let mut prefix = None;
        if let Some(after) = rest.strip_prefix(':') {
            let (p, tail) = after.split_once(' ').unwrap_or((after, ""));
            prefix = Some(p.to_owned());
            rest = tail;
        }
        rest = rest.trim_start_matches(' ');
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
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
            let (param, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(param.to_owned());
            rest = tail;
        }
        IrcLine {
            tags,
            prefix,
            command: command.to_owned(),
            params,
            raw: raw.to_owned(),
        }
    }

    /// The line as parsed (without CRLF).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Value of tag `key` (`Some("")` for a valueless tag).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Nick part of the prefix (`nick` of `nick!user@host`; a server name
    /// is returned whole).
    pub fn nick(&self) -> Option<&str> {
        let prefix = self.prefix.as_deref()?;
        Some(prefix.split(['!', '@']).next().unwrap_or(prefix))
    }

    /// Parameter `i` (0-based, the trailing one included).
    pub fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }

    /// The last parameter (usually the text), if any.
    pub fn trailing(&self) -> Option<&str> {
        self.params.last().map(String::as_str)
    }

    /// Whether the command is `command` (case-insensitive).
    pub fn is(&self, command: &str) -> bool {
        self.command.eq_ignore_ascii_case(command)
    }
}

/// IRCv3 tag value unescaping (`\:` `\s` `\\` `\r` `\n`; other escaped
/// characters stand for themselves, a trailing `\` is dropped).
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
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Whether `line` is an error numeric (4xx/5xx) about `chan`, e.g.
/// 474 (banned) or 403 (no such channel).
fn is_error_for(line: &str, chan: &str) -> bool {
    let line = IrcLine::parse(line);
    let is_error = line.command.len() == 3
        && line.command.starts_with(['4', '5'])
        && line.command.bytes().all(|b| b.is_ascii_digit());
    is_error && line.params.iter().any(|p| p.eq_ignore_ascii_case(chan))
}

fn lossy(raw: Vec<u8>) -> String {
    String::from_utf8(raw).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn lossy_ref(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(raw)
}

//! IRC channel status ↔ MUC affiliation and role, and MODE line parsing.
//!
//! MUC has two axes (affiliation: long-term standing; role: privileges in the
//! current session); IRC has one ordered list of status modes (`q a o h v`).
//! The mapping follows biboumi, so that users moving from biboumi see the same
//! presences, and it goes by mode *letter*, resolved through the server's
//! PREFIX, because the symbols differ between networks (euIRC shows `q` as `*`):
//!
//! | mode | usual symbol | affiliation | role        |
//! |------|--------------|-------------|-------------|
//! | `q`  | `~`          | owner       | moderator   |
//! | `a`  | `&`          | owner       | moderator   |
//! | `o`  | `@`          | admin       | moderator   |
//! | `h`  | `%`          | member      | moderator   |
//! | `v`  | `+`          | member      | participant |
//! | none / other |      | none        | participant |
//!
//! With multi-prefix a nick carries several statuses; the highest MUC standing
//! wins (affiliation first, then role). That equals "highest PREFIX rank" on
//! every usual server, and stays right when a server ranks an unknown mode
//! (InspIRCd's `Y`) above the ones mapped here.

use estuary_bridge::{Affiliation, Role};

use crate::isupport::{Isupport, Prefixes};

/// The status modes one member holds, as a set of mode letters in one word:
/// a connection keeps one per member of each of its channels, and a `Vec`
/// would be three words plus an allocation. Status modes are letters on every
/// server; anything else cannot be held (and maps to no standing anyway).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModeSet(u64);

impl ModeSet {
    fn bit(mode: char) -> Option<u64> {
        match mode {
            'a'..='z' => Some(1 << (mode as u32 - 'a' as u32)),
            'A'..='Z' => Some(1 << (26 + mode as u32 - 'A' as u32)),
            _ => None,
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, mode: char) -> bool {
        Self::bit(mode).is_some_and(|b| self.0 & b != 0)
    }

    pub fn insert(&mut self, mode: char) {
        self.0 |= Self::bit(mode).unwrap_or(0);
    }

    pub fn remove(&mut self, mode: char) {
        self.0 &= !Self::bit(mode).unwrap_or(0);
    }

    pub fn iter(self) -> impl Iterator<Item = char> {
        ('a'..='z')
            .chain('A'..='Z')
            .filter(move |&m| self.contains(m))
    }
}

impl FromIterator<char> for ModeSet {
    fn from_iter<I: IntoIterator<Item = char>>(modes: I) -> ModeSet {
        let mut set = ModeSet::default();
        modes.into_iter().for_each(|m| set.insert(m));
        set
    }
}

/// The standing that status mode `mode` gives (see the module table).
pub fn standing_for_mode(mode: char) -> (Affiliation, Role) {
    match mode {
        'q' | 'a' => (Affiliation::Owner, Role::Moderator),
        'o' => (Affiliation::Admin, Role::Moderator),
        'h' => (Affiliation::Member, Role::Moderator),
        'v' => (Affiliation::Member, Role::Participant),
        _ => (Affiliation::None, Role::Participant),
    }
}

/// The standing a prefix symbol gives: through PREFIX to its mode letter, or,
/// for a symbol the server did not declare, by the conventional symbol
/// (`~`/`&` owner, `@` admin, `%` halfop, `+` voice).
pub fn standing_for_symbol(symbol: char, prefixes: &Prefixes) -> (Affiliation, Role) {
    let mode = prefixes.mode_for_symbol(symbol).unwrap_or(match symbol {
        '~' => 'q',
        '&' => 'a',
        '@' => 'o',
        '%' => 'h',
        '+' => 'v',
        _ => ' ',
    });
    standing_for_mode(mode)
}

fn affiliation_rank(affiliation: Affiliation) -> u8 {
    match affiliation {
        Affiliation::Outcast => 0,
        Affiliation::None => 1,
        Affiliation::Member => 2,
        Affiliation::Admin => 3,
        Affiliation::Owner => 4,
    }
}

fn role_rank(role: Role) -> u8 {
    match role {
        Role::None => 0,
        Role::Visitor => 1,
        Role::Participant => 2,
        Role::Moderator => 3,
    }
}

/// The highest of several standings; none at all is none/participant, what a
/// plain IRC user gets.
fn highest(standings: impl IntoIterator<Item = (Affiliation, Role)>) -> (Affiliation, Role) {
    standings
        .into_iter()
        .max_by_key(|&(a, r)| (affiliation_rank(a), role_rank(r)))
        .unwrap_or((Affiliation::None, Role::Participant))
}

/// The standing of a nick holding all of `modes` (mode letters).
pub fn standing_for_modes(modes: impl IntoIterator<Item = char>) -> (Affiliation, Role) {
    highest(modes.into_iter().map(standing_for_mode))
}

/// One entry of a NAMES reply (353).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesEntry {
    pub nick: String,
    /// `user@host`, when the server has userhost-in-names.
    pub userhost: Option<String>,
    /// The prefix symbols, each once, highest rank first (several with multi-prefix).
    pub prefixes: Vec<char>,
}

impl NamesEntry {
    /// The mode letters behind the prefix symbols, highest rank first.
    pub fn modes(&self, prefixes: &Prefixes) -> Vec<char> {
        self.prefixes
            .iter()
            .filter_map(|&s| prefixes.mode_for_symbol(s))
            .collect()
    }

    /// The MUC standing the prefixes give.
    pub fn standing(&self, prefixes: &Prefixes) -> (Affiliation, Role) {
        highest(
            self.prefixes
                .iter()
                .map(|&s| standing_for_symbol(s, prefixes)),
        )
    }
}

/// Parse one NAMES entry: `nick`, `@nick`, `@+nick` (multi-prefix),
/// `@nick!user@host` (userhost-in-names). Only symbols the server declared in
/// PREFIX are taken as prefixes. `None` for an entry without a nick.
pub fn parse_names_entry(entry: &str, prefixes: &Prefixes) -> Option<NamesEntry> {
    let rest = entry.trim_start_matches(|c| prefixes.is_symbol(c));
    let symbols = &entry[..entry.len() - rest.len()];
    let (nick, userhost) = match rest.split_once('!') {
        Some((nick, userhost)) => (nick, Some(userhost).filter(|u| !u.is_empty())),
        None => (rest, None),
    };
    if nick.is_empty() {
        return None;
    }
    let mut found: Vec<char> = Vec::new();
    for s in symbols.chars() {
        if !found.contains(&s) {
            found.push(s);
        }
    }
    found.sort_by_key(|&s| prefixes.rank_of_symbol(s));
    Some(NamesEntry {
        nick: nick.to_owned(),
        userhost: userhost.map(str::to_owned),
        prefixes: found,
    })
}

/// Parse the space-separated list of a NAMES reply, skipping empty entries.
pub fn parse_names(list: &str, prefixes: &Prefixes) -> Vec<NamesEntry> {
    list.split(' ')
        .filter_map(|e| parse_names_entry(e, prefixes))
        .collect()
}

/// One channel mode change, parsed from a MODE line or to be sent in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeChange {
    /// `+` (true) or `-` (false).
    pub adding: bool,
    pub mode: char,
    /// The parameter (a nick for status modes, a mask for bans).
    pub arg: Option<String>,
}

impl ModeChange {
    pub fn add(mode: char, arg: impl Into<String>) -> ModeChange {
        ModeChange {
            adding: true,
            mode,
            arg: Some(arg.into()),
        }
    }

    pub fn remove(mode: char, arg: impl Into<String>) -> ModeChange {
        ModeChange {
            adding: false,
            mode,
            arg: Some(arg.into()),
        }
    }

    /// `'+'` or `'-'`.
    pub fn sign(&self) -> char {
        if self.adding {
            '+'
        } else {
            '-'
        }
    }
}

/// Parse the arguments of a channel MODE line after the channel name, such
/// as `["+ov-v", "alice", "bob", "carol"]`, with the server's CHANMODES and
/// PREFIX deciding which letters consume a parameter.
///
/// Letters before any sign count as `+`. A letter whose parameter is missing
/// gets `arg: None` (a list query such as `+b`, or a truncated line). Left-over
/// parameters that start with `+`/`-` are read as a further mode string
/// (`+o alice -v bob`, as some clients send); other left-overs are ignored.
pub fn parse_mode_changes<S: AsRef<str>>(args: &[S], isupport: &Isupport) -> Vec<ModeChange> {
    let mut changes = Vec::new();
    let mut next = 0;
    while let Some(modestring) = args.get(next).map(AsRef::as_ref) {
        if next > 0 && !modestring.starts_with(['+', '-']) {
            break;
        }
        next += 1;
        let mut adding = true;
        for c in modestring.chars() {
            match c {
                '+' => adding = true,
                '-' => adding = false,
                mode => {
                    let arg = if isupport.mode_takes_param(mode, adding) {
                        let arg = args.get(next).map(|a| a.as_ref().to_owned());
                        next += usize::from(arg.is_some());
                        arg
                    } else {
                        None
                    };
                    changes.push(ModeChange { adding, mode, arg });
                }
            }
        }
    }
    changes
}

/// Group changes into MODE commands of at most `max_params` parameters each
/// (ISUPPORT `MODES`): each item is the arguments after the channel name,
/// `["-q+o", "alice", "alice"]`.
pub fn mode_lines(changes: &[ModeChange], max_params: usize) -> Vec<Vec<String>> {
    let max_params = max_params.max(1);
    let mut lines = Vec::new();
    let mut modestring = String::new();
    let mut params: Vec<String> = Vec::new();
    let mut sign = None;
    for change in changes {
        if change.arg.is_some() && params.len() == max_params {
            let mut line = vec![std::mem::take(&mut modestring)];
            line.append(&mut params);
            lines.push(line);
            sign = None;
        }
        if sign != Some(change.adding) {
            modestring.push(change.sign());
            sign = Some(change.adding);
        }
        modestring.push(change.mode);
        params.extend(change.arg.clone());
    }
    if !modestring.is_empty() {
        let mut line = vec![modestring];
        line.append(&mut params);
        lines.push(line);
    }
    lines
}

/// The modes of `held` that `prefixes` knows, each once, highest rank first, with its standing.
fn held_known<'a>(
    held: &'a [char],
    prefixes: &'a Prefixes,
) -> impl Iterator<Item = (char, (Affiliation, Role))> + 'a {
    prefixes
        .modes()
        .filter(|m| held.contains(m))
        .map(|m| (m, standing_for_mode(m)))
}

/// The MODE changes that give `nick` the MUC `role` (a muc#admin role change),
/// given the status modes it now holds (`held`, mode letters) and the server's
/// PREFIX. Only changes that make a difference are returned.
///
/// - moderator: `+o` (or `+h` where there is no `o`) unless a held mode already
///   makes the nick a moderator;
/// - participant: `-o`/`-h` for those held; `q`/`a` stay, as they come with the
///   owner affiliation, which a role change must not take away (XEP-0045 does
///   not let an owner be demoted to participant either); voice stays;
/// - visitor: as participant, and `-v` too (only meaningful in a `+m` channel);
/// - none: nothing, as that is a kick, a KICK command and not a mode.
pub fn role_mode_changes(
    nick: &str,
    held: &[char],
    role: Role,
    prefixes: &Prefixes,
) -> Vec<ModeChange> {
    let held: Vec<(char, (Affiliation, Role))> = held_known(held, prefixes).collect();
    match role {
        Role::Moderator => {
            if held.iter().any(|&(_, (_, r))| r == Role::Moderator) {
                Vec::new()
            } else {
                ['o', 'h']
                    .into_iter()
                    .find(|&m| prefixes.has_mode(m))
                    .map(|m| ModeChange::add(m, nick))
                    .into_iter()
                    .collect()
            }
        }
        Role::Participant | Role::Visitor => held
            .iter()
            .filter(|&&(m, (a, r))| {
                (r == Role::Moderator && a != Affiliation::Owner)
                    || (role == Role::Visitor && m == 'v')
            })
            .map(|&(m, _)| ModeChange::remove(m, nick))
            .collect(),
        Role::None => Vec::new(),
    }
}

/// The MODE changes that give `nick` the MUC `affiliation` (a muc#admin
/// affiliation change), given the status modes it holds and the server's
/// PREFIX. Held modes that give more than the target are removed first
/// (highest first), then the target's mode is added if no remaining mode gives
/// exactly that affiliation:
///
/// - owner: `+q`, or `+o` on a server without `q` (the best it has; the nick
///   then shows as admin);
/// - admin: `+o`;
/// - member: `+v` (a halfop already is a member and keeps `h`);
/// - none: every held status mode removed;
/// - outcast: every held status mode removed, then `+b nick!*@*` (the
///   caller kicks separately; a ban alone does not remove a present user).
///
/// Lower modes than the target are kept (an admin who had voice keeps it).
pub fn affiliation_mode_changes(
    nick: &str,
    held: &[char],
    affiliation: Affiliation,
    prefixes: &Prefixes,
) -> Vec<ModeChange> {
    let target = affiliation_rank(affiliation).max(affiliation_rank(Affiliation::None));
    let mut changes = Vec::new();
    let mut remaining = Vec::new();
    for (mode, (a, _)) in held_known(held, prefixes) {
        if affiliation_rank(a) > target {
            changes.push(ModeChange::remove(mode, nick));
        } else {
            remaining.push(a);
        }
    }
    let wanted = match affiliation {
        Affiliation::Owner => ['q', 'o'].into_iter().find(|&m| prefixes.has_mode(m)),
        Affiliation::Admin => Some('o').filter(|&m| prefixes.has_mode(m)),
        Affiliation::Member => Some('v').filter(|&m| prefixes.has_mode(m)),
        Affiliation::None | Affiliation::Outcast => None,
    };
    if let Some(mode) = wanted {
        let has_target = remaining.contains(&affiliation);
        if !has_target && !held.contains(&mode) {
            changes.push(ModeChange::add(mode, nick));
        }
    }
    if affiliation == Affiliation::Outcast {
        changes.push(ModeChange::add('b', format!("{nick}!*@*")));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mode_set_holds_letters_of_both_cases() {
        let mut set: ModeSet = "qoYv".chars().collect();
        assert!(set.contains('o') && set.contains('Y') && !set.contains('y'));
        set.remove('o');
        set.insert('h');
        set.insert('*');
        assert_eq!(set.iter().collect::<String>(), "hqvY");
        assert!(!set.contains('*'));
    }

    fn full() -> Prefixes {
        Prefixes::parse("(qaohv)~&@%+").unwrap()
    }

    fn isupport(tokens: &[&str]) -> Isupport {
        let mut i = Isupport::new();
        for t in tokens {
            i.apply_token(t);
        }
        i
    }

    fn show(changes: &[ModeChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| format!("{}{} {}", c.sign(), c.mode, c.arg.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn mode_table() {
        use Affiliation as A;
        assert_eq!(standing_for_mode('q'), (A::Owner, Role::Moderator));
        assert_eq!(standing_for_mode('a'), (A::Owner, Role::Moderator));
        assert_eq!(standing_for_mode('o'), (A::Admin, Role::Moderator));
        assert_eq!(standing_for_mode('h'), (A::Member, Role::Moderator));
        assert_eq!(standing_for_mode('v'), (A::Member, Role::Participant));
        assert_eq!(standing_for_mode('Y'), (A::None, Role::Participant));
        assert_eq!(standing_for_modes([]), (A::None, Role::Participant));
        assert_eq!(standing_for_modes(['v', 'h']), (A::Member, Role::Moderator));
        assert_eq!(
            standing_for_modes(['v', 'o', 'h']),
            (A::Admin, Role::Moderator)
        );
        assert_eq!(
            standing_for_modes(['Y', 'v']),
            (A::Member, Role::Participant)
        );
    }

    #[test]
    fn symbols_resolve_through_prefix() {
        let p = full();
        assert_eq!(standing_for_symbol('~', &p).0, Affiliation::Owner);
        assert_eq!(standing_for_symbol('&', &p).0, Affiliation::Owner);
        assert_eq!(standing_for_symbol('@', &p).0, Affiliation::Admin);
        assert_eq!(
            standing_for_symbol('%', &p),
            (Affiliation::Member, Role::Moderator)
        );
        assert_eq!(
            standing_for_symbol('+', &p),
            (Affiliation::Member, Role::Participant)
        );
        // euIRC-style symbols: `*` is q there.
        let eu = Prefixes::parse("(qaohv)*!@%+").unwrap();
        assert_eq!(standing_for_symbol('*', &eu).0, Affiliation::Owner);
        assert_eq!(standing_for_symbol('!', &eu).0, Affiliation::Owner);
        // Undeclared symbols fall back to the conventional meaning.
        let small = Prefixes::default();
        assert_eq!(standing_for_symbol('~', &small).0, Affiliation::Owner);
        assert_eq!(
            standing_for_symbol('x', &small),
            (Affiliation::None, Role::Participant)
        );
    }

    #[test]
    fn names_entries() {
        let p = full();
        let e = parse_names_entry("@+alice", &p).unwrap();
        assert_eq!(e.nick, "alice");
        assert_eq!(e.userhost, None);
        assert_eq!(e.prefixes, vec!['@', '+']);
        assert_eq!(e.modes(&p), vec!['o', 'v']);
        assert_eq!(e.standing(&p), (Affiliation::Admin, Role::Moderator));

        let e = parse_names_entry("+~bob!~b@example.org", &p).unwrap();
        assert_eq!(e.nick, "bob");
        assert_eq!(e.userhost.as_deref(), Some("~b@example.org"));
        assert_eq!(e.prefixes, vec!['~', '+'], "sorted by rank");
        assert_eq!(e.standing(&p), (Affiliation::Owner, Role::Moderator));

        let e = parse_names_entry("carol", &p).unwrap();
        assert!(e.prefixes.is_empty());
        assert_eq!(e.standing(&p), (Affiliation::None, Role::Participant));

        let e = parse_names_entry("%%dave!", &p).unwrap();
        assert_eq!(e.prefixes, vec!['%'], "deduplicated");
        assert_eq!(e.userhost, None, "empty userhost");

        assert_eq!(parse_names_entry("", &p), None);
        assert_eq!(parse_names_entry("@+", &p), None);
        assert_eq!(parse_names_entry("@!u@h", &p), None);

        // With the default PREFIX, `~` is not a prefix and stays in the nick.
        let e = parse_names_entry("~weird", &Prefixes::default()).unwrap();
        assert_eq!(e.nick, "~weird");
        assert!(e.prefixes.is_empty());
    }

    #[test]
    fn names_list() {
        let p = Prefixes::default();
        let entries = parse_names("@op +voice  plain ", &p);
        let nicks: Vec<&str> = entries.iter().map(|e| e.nick.as_str()).collect();
        assert_eq!(nicks, ["op", "voice", "plain"]);
        assert!(parse_names("", &p).is_empty());
    }

    #[test]
    fn names_roundtrip_property() {
        // Every subset of prefixes, in every rotation, parses back to the same set.
        let p = full();
        let symbols: Vec<char> = p.symbols().collect();
        for mask in 0u32..(1 << symbols.len()) {
            let chosen: Vec<char> = symbols
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, &s)| s)
                .collect();
            for rot in 0..chosen.len().max(1) {
                let mut order = chosen.clone();
                let by = rot.min(order.len());
                order.rotate_left(by);
                let entry: String = order.iter().collect::<String>() + "nick!u@h";
                let e = parse_names_entry(&entry, &p).unwrap();
                assert_eq!(e.nick, "nick");
                assert_eq!(e.prefixes, chosen, "{entry}");
                let expected = standing_for_modes(e.modes(&p));
                assert_eq!(e.standing(&p), expected);
                // The highest-ranked prefix alone gives the same standing.
                if let Some(&top) = chosen.first() {
                    assert_eq!(standing_for_symbol(top, &p), expected, "{entry}");
                }
            }
        }
    }

    #[test]
    fn mode_line_parsing() {
        let i = isupport(&["PREFIX=(qaohv)~&@%+", "CHANMODES=beI,k,l,imnpst"]);
        let c = parse_mode_changes(&["+ov-v", "alice", "bob", "carol"], &i);
        assert_eq!(show(&c), ["+o alice", "+v bob", "-v carol"]);

        let c = parse_mode_changes(&["+lk-lt", "10", "key"], &i);
        assert_eq!(show(&c), ["+l 10", "+k key", "-l ", "-t "]);

        let c = parse_mode_changes(&["-k+b", "oldkey", "*!*@spam"], &i);
        assert_eq!(show(&c), ["-k oldkey", "+b *!*@spam"]);

        let c = parse_mode_changes(&["+b"], &i);
        assert_eq!(
            c,
            vec![ModeChange {
                adding: true,
                mode: 'b',
                arg: None
            }]
        );

        let c = parse_mode_changes(&["o", "alice"], &i);
        assert_eq!(show(&c), ["+o alice"], "no sign means +");

        let c = parse_mode_changes(&["+o", "alice", "-v", "bob"], &i);
        assert_eq!(show(&c), ["+o alice", "-v bob"], "second mode string");

        let c = parse_mode_changes(&["+m", "extra"], &i);
        assert_eq!(show(&c), ["+m "], "left-over parameter ignored");

        let c = parse_mode_changes(&["+Zo", "alice"], &i);
        assert_eq!(
            show(&c),
            ["+Z ", "+o alice"],
            "unknown modes take no parameter"
        );

        let empty: [&str; 0] = [];
        assert!(parse_mode_changes(&empty, &i).is_empty());
        assert!(parse_mode_changes(&["+-"], &i).is_empty());

        // Libera: q is a list mode (quiet), not owner.
        let libera = isupport(&["PREFIX=(ov)@+", "CHANMODES=eIbq,k,flj,CFLMPQRSTcgimnprstuz"]);
        let c = parse_mode_changes(&["+qj", "*!*@x", "3:5"], &libera);
        assert_eq!(show(&c), ["+q *!*@x", "+j 3:5"]);
    }

    #[test]
    fn mode_line_grouping() {
        let changes = vec![
            ModeChange::remove('q', "a"),
            ModeChange::add('o', "a"),
            ModeChange::add('v', "b"),
            ModeChange::add('v', "c"),
            ModeChange::remove('v', "d"),
        ];
        assert_eq!(
            mode_lines(&changes, 3),
            vec![vec!["-q+ov", "a", "a", "b"], vec!["+v-v", "c", "d"],]
        );
        assert_eq!(mode_lines(&changes, usize::MAX).len(), 1);
        assert_eq!(mode_lines(&changes, 0).len(), 5, "at least one per line");
        assert!(mode_lines(&[], 3).is_empty());
        let flags = vec![
            ModeChange {
                adding: true,
                mode: 'm',
                arg: None,
            },
            ModeChange {
                adding: false,
                mode: 't',
                arg: None,
            },
        ];
        assert_eq!(mode_lines(&flags, 1), vec![vec!["+m-t"]]);
    }

    #[test]
    fn grouped_lines_parse_back() {
        let i = isupport(&["PREFIX=(qaohv)~&@%+"]);
        let modes = ['q', 'a', 'o', 'h', 'v'];
        let mut seed = 0x2545_f491_u32;
        for _ in 0..200 {
            let mut changes = Vec::new();
            for n in 0..(seed % 9) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                changes.push(ModeChange {
                    adding: seed & 1 == 0,
                    mode: modes[(seed as usize >> 1) % modes.len()],
                    arg: Some(format!("nick{n}")),
                });
            }
            for per_line in 1..5 {
                let parsed: Vec<ModeChange> = mode_lines(&changes, per_line)
                    .iter()
                    .inspect(|line| assert!(line.len() <= per_line + 1))
                    .flat_map(|line| parse_mode_changes(line, &i))
                    .collect();
                assert_eq!(parsed, changes);
            }
        }
    }

    #[test]
    fn role_changes() {
        let p = full();
        let r = |held: &[char], role| show(&role_mode_changes("n", held, role, &p));
        assert_eq!(r(&[], Role::Moderator), ["+o n"]);
        assert_eq!(r(&['v'], Role::Moderator), ["+o n"]);
        assert!(
            r(&['h'], Role::Moderator).is_empty(),
            "halfop already moderates"
        );
        assert!(r(&['q'], Role::Moderator).is_empty());
        assert_eq!(r(&['o', 'h', 'v'], Role::Participant), ["-o n", "-h n"]);
        assert!(r(&['q'], Role::Participant).is_empty(), "owner keeps q");
        assert!(r(&['v'], Role::Participant).is_empty(), "voice kept");
        assert!(r(&[], Role::Participant).is_empty());
        assert_eq!(r(&['o', 'v'], Role::Visitor), ["-o n", "-v n"]);
        assert!(r(&['o'], Role::None).is_empty(), "a kick, not a mode");
        // Modes the server does not know are never touched.
        let small = Prefixes::default();
        assert!(role_mode_changes("n", &['h'], Role::Participant, &small).is_empty());
        // Without `o`, moderator falls back to `h`; without either, nothing.
        let h_only = Prefixes::parse("(hv)%+").unwrap();
        assert_eq!(
            show(&role_mode_changes("n", &[], Role::Moderator, &h_only)),
            ["+h n"]
        );
        assert!(role_mode_changes("n", &[], Role::Moderator, &Prefixes::none()).is_empty());
    }

    #[test]
    fn affiliation_changes() {
        let p = full();
        let a = |held: &[char], aff| show(&affiliation_mode_changes("n", held, aff, &p));
        assert_eq!(a(&[], Affiliation::Owner), ["+q n"]);
        assert!(
            a(&['a'], Affiliation::Owner).is_empty(),
            "a is owner already"
        );
        assert_eq!(a(&[], Affiliation::Admin), ["+o n"]);
        assert_eq!(a(&['q', 'o'], Affiliation::Admin), ["-q n"]);
        assert_eq!(a(&['q', 'a'], Affiliation::Admin), ["-q n", "-a n", "+o n"]);
        assert_eq!(a(&['v'], Affiliation::Admin), ["+o n"], "voice kept");
        assert_eq!(a(&[], Affiliation::Member), ["+v n"]);
        assert!(
            a(&['h'], Affiliation::Member).is_empty(),
            "halfop is a member"
        );
        assert_eq!(a(&['o', 'v'], Affiliation::Member), ["-o n"]);
        assert_eq!(a(&['o'], Affiliation::Member), ["-o n", "+v n"]);
        assert_eq!(
            a(&['q', 'a', 'o', 'h', 'v'], Affiliation::None),
            ["-q n", "-a n", "-o n", "-h n", "-v n"]
        );
        assert!(a(&[], Affiliation::None).is_empty());
        assert_eq!(a(&['o'], Affiliation::Outcast), ["-o n", "+b n!*@*"]);
        // Without `q`, owner falls back to `o`.
        let small = Prefixes::default();
        assert_eq!(
            show(&affiliation_mode_changes(
                "n",
                &[],
                Affiliation::Owner,
                &small
            )),
            ["+o n"]
        );
        assert!(affiliation_mode_changes("n", &['o'], Affiliation::Owner, &small).is_empty());
        // Unknown held modes are ignored.
        assert_eq!(
            show(&affiliation_mode_changes(
                "n",
                &['q'],
                Affiliation::None,
                &small
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn changes_reach_their_target_property() {
        // For every held set and target, applying the changes yields a nick
        // whose standing has the target (whenever the server can express it).
        let p = full();
        let modes: Vec<char> = p.modes().collect();
        for mask in 0u32..(1 << modes.len()) {
            let held: Vec<char> = modes
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, &m)| m)
                .collect();
            let apply = |changes: &[ModeChange]| {
                let mut now = held.clone();
                for c in changes {
                    if c.mode == 'b' {
                        continue;
                    }
                    if c.adding {
                        assert!(!now.contains(&c.mode), "{held:?}: redundant +{}", c.mode);
                        now.push(c.mode);
                    } else {
                        assert!(now.contains(&c.mode), "{held:?}: -{} not held", c.mode);
                        now.retain(|&m| m != c.mode);
                    }
                }
                standing_for_modes(now)
            };
            for aff in [
                Affiliation::Owner,
                Affiliation::Admin,
                Affiliation::Member,
                Affiliation::None,
                Affiliation::Outcast,
            ] {
                let changes = affiliation_mode_changes("n", &held, aff, &p);
                let expected = if aff == Affiliation::Outcast {
                    Affiliation::None
                } else {
                    aff
                };
                assert_eq!(apply(&changes).0, expected, "{held:?} → {aff:?}");
            }
            for role in [Role::Moderator, Role::Participant, Role::Visitor] {
                let changes = role_mode_changes("n", &held, role, &p);
                let got = apply(&changes).1;
                let owner = held.iter().any(|m| matches!(m, 'q' | 'a'));
                match role {
                    Role::Moderator => assert_eq!(got, Role::Moderator),
                    _ if owner => assert_eq!(got, Role::Moderator, "owner keeps moderating"),
                    _ => assert_eq!(got, Role::Participant, "{held:?} → {role:?}"),
                }
            }
        }
    }
}

//! IRC case mapping: which nicks and channel names the server considers equal.
//!
//! IRC compares names case-insensitively, but "case" is whatever the server's
//! ISUPPORT `CASEMAPPING` token says. The bridge must fold names exactly like
//! the server does, or it will keep two occupants for one nick (`[Bob]` and
//! `{bob}` on an rfc1459 server) or lose messages for a channel the server
//! spells differently from the user (`#Rust` vs `#rust`).
//!
//! Decision for values the bridge does not implement exactly: an unknown value
//! falls back to [`Casemapping::Rfc1459`], the RFC default and the mapping that
//! folds the most ASCII characters. Folding too much only merges names that
//! differ solely in `[]\~` vs `{}|^`, which practically never coexist; folding
//! too little would split one name into two and lose messages.

use std::fmt;

/// A server's `CASEMAPPING`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Casemapping {
    /// `ascii`: only `A`–`Z` fold to `a`–`z`.
    Ascii,
    /// `rfc1459`, the default when the server says nothing: `A`–`Z` plus
    /// `[`, `]`, `\`, `~` fold to `{`, `}`, `|`, `^` (the Scandinavian origin of IRC).
    #[default]
    Rfc1459,
    /// `strict-rfc1459`: like rfc1459 but `~` and `^` are distinct.
    StrictRfc1459,
    /// `rfc7613` (PRECIS, used by Ergo): Unicode-aware. Approximated here by
    /// Unicode lowercasing, without the NFC normalisation PRECIS also
    /// applies; servers send names already normalised, so this only matters
    /// for names typed by the user in a decomposed form.
    Rfc7613,
}

impl Casemapping {
    /// The mapping named by a `CASEMAPPING` value; unknown names give
    /// [`Casemapping::Rfc1459`] (see the module documentation for why).
    pub fn from_token(value: &str) -> Casemapping {
        match value.to_ascii_lowercase().as_str() {
            "ascii" => Casemapping::Ascii,
            "strict-rfc1459" => Casemapping::StrictRfc1459,
            "rfc7613" | "precis" => Casemapping::Rfc7613,
            _ => Casemapping::Rfc1459,
        }
    }

    /// The ISUPPORT spelling of this mapping.
    pub fn as_str(&self) -> &'static str {
        match self {
            Casemapping::Ascii => "ascii",
            Casemapping::Rfc1459 => "rfc1459",
            Casemapping::StrictRfc1459 => "strict-rfc1459",
            Casemapping::Rfc7613 => "rfc7613",
        }
    }

    /// Fold one ASCII-range character; characters outside the mapping are returned unchanged.
    fn fold_ascii(self, c: char) -> char {
        match (self, c) {
            (_, 'A'..='Z') => c.to_ascii_lowercase(),
            (Casemapping::Rfc1459 | Casemapping::StrictRfc1459, '[') => '{',
            (Casemapping::Rfc1459 | Casemapping::StrictRfc1459, ']') => '}',
            (Casemapping::Rfc1459 | Casemapping::StrictRfc1459, '\\') => '|',
            (Casemapping::Rfc1459, '~') => '^',
            _ => c,
        }
    }

    /// The canonical (lower-case) form of `name`: two names are the same on
    /// the server exactly when their folds are equal. Use it as a map key.
    pub fn fold(&self, name: &str) -> String {
        match self {
            Casemapping::Rfc7613 => name.chars().flat_map(char::to_lowercase).collect(),
            _ => name.chars().map(|c| self.fold_ascii(c)).collect(),
        }
    }

    /// Whether the server considers `a` and `b` the same name.
    ///
    /// (An inherent method: `==` between two `Casemapping`s still compares the mappings.)
    pub fn eq(&self, a: &str, b: &str) -> bool {
        match self {
            Casemapping::Rfc7613 => self.fold(a) == self.fold(b),
            _ => {
                a.len() == b.len()
                    && a.chars()
                        .zip(b.chars())
                        .all(|(x, y)| self.fold_ascii(x) == self.fold_ascii(y))
            }
        }
    }
}

impl fmt::Display for Casemapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Casemapping; 4] = [
        Casemapping::Ascii,
        Casemapping::Rfc1459,
        Casemapping::StrictRfc1459,
        Casemapping::Rfc7613,
    ];

    #[test]
    fn token_names() {
        assert_eq!(Casemapping::from_token("ascii"), Casemapping::Ascii);
        assert_eq!(Casemapping::from_token("rfc1459"), Casemapping::Rfc1459);
        assert_eq!(
            Casemapping::from_token("strict-rfc1459"),
            Casemapping::StrictRfc1459
        );
        assert_eq!(Casemapping::from_token("RFC7613"), Casemapping::Rfc7613);
        assert_eq!(Casemapping::from_token("rfc3454"), Casemapping::Rfc1459);
        assert_eq!(Casemapping::from_token(""), Casemapping::Rfc1459);
        assert_eq!(Casemapping::default(), Casemapping::Rfc1459);
        for m in ALL {
            assert_eq!(Casemapping::from_token(m.as_str()), m);
            assert_eq!(m.to_string(), m.as_str());
        }
    }

    #[test]
    fn ascii_folds_letters_only() {
        let m = Casemapping::Ascii;
        assert_eq!(m.fold("NiCk[]\\~"), "nick[]\\~");
        assert!(m.eq("#Rust", "#rUST"));
        assert!(!m.eq("[a]", "{a}"));
        assert_eq!(m.fold("ÉCOLE"), "École", "non-ASCII is left alone");
    }

    #[test]
    fn rfc1459_folds_scandinavian_brackets() {
        let m = Casemapping::Rfc1459;
        assert_eq!(m.fold("[Nick]\\~"), "{nick}|^");
        assert!(m.eq("[Bob]", "{bob}"));
        assert!(m.eq("a~b", "A^B"));
        assert!(m.eq("a\\b", "a|b"));
        assert!(!m.eq("ab", "abc"));
        assert_eq!(m.fold("{}|^"), "{}|^", "already folded");
    }

    #[test]
    fn strict_rfc1459_keeps_tilde() {
        let m = Casemapping::StrictRfc1459;
        assert_eq!(m.fold("[Nick]\\~"), "{nick}|~");
        assert!(m.eq("[x]", "{X}"));
        assert!(!m.eq("a~", "a^"));
    }

    #[test]
    fn rfc7613_is_unicode_aware() {
        let m = Casemapping::Rfc7613;
        assert!(m.eq("ÉCOLE", "école"));
        assert!(!m.eq("[a]", "{a}"));
        assert_eq!(m.fold("ΣΑΣ"), "σασ");
    }

    #[test]
    fn fold_is_idempotent_and_eq_agrees_with_fold() {
        let samples = [
            "", "a", "A", "[", "{", "~", "^", "\\", "|", "]", "}", "Ä", "ä", "#Chan", "#chan",
            "Nick[m]", "nick{M}", "ß", "İ", "x~Y", "X^y",
        ];
        for m in ALL {
            for a in samples {
                let folded = m.fold(a);
                assert_eq!(m.fold(&folded), folded, "{m}: fold({a:?}) idempotent");
                assert!(m.eq(a, a), "{m}: reflexive {a:?}");
                for b in samples {
                    assert_eq!(
                        m.eq(a, b),
                        m.fold(a) == m.fold(b),
                        "{m}: eq({a:?}, {b:?}) agrees with fold"
                    );
                    assert_eq!(m.eq(a, b), m.eq(b, a), "{m}: symmetric");
                }
            }
        }
    }

    #[test]
    fn every_ascii_pair_matches_the_tables() {
        for m in [
            Casemapping::Ascii,
            Casemapping::Rfc1459,
            Casemapping::StrictRfc1459,
        ] {
            for x in 0u8..128 {
                for y in 0u8..128 {
                    let (a, b) = (x as char, y as char);
                    let expected = x == y
                        || x.eq_ignore_ascii_case(&y)
                        || (m != Casemapping::Ascii
                            && matches!(
                                (x.max(y), x.min(y)),
                                (b'{', b'[') | (b'}', b']') | (b'|', b'\\')
                            ))
                        || (m == Casemapping::Rfc1459
                            && matches!((x.max(y), x.min(y)), (b'~', b'^')));
                    assert_eq!(
                        m.eq(&a.to_string(), &b.to_string()),
                        expected,
                        "{m}: {a:?} vs {b:?}"
                    );
                }
            }
        }
    }
}

//! The encodings a user sets per channel (biboumi's channel "In encoding"),
//! for the lines about that channel that are not UTF-8: a Russian channel
//! in KOI8-R on a network whose other channels are Latin-1.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::casemap::Casemapping;
use crate::text::Encoding;

/// One server's channels with an encoding of their own, shared by the
/// user's session, which sets them, and the reader of each connection to
/// the server, which reads them only for lines that are not UTF-8.
///
/// Names are folded as rfc1459, the mapping of most servers: a line is
/// decoded before the connection's CASEMAPPING is looked at, and names that
/// differ only by `[]\~` against `{}|^` are not worth a second lookup.
#[derive(Debug, Default)]
pub struct ChannelEncodings(RwLock<HashMap<String, &'static Encoding>>);

impl ChannelEncodings {
    /// Give `channel` its own encoding, or with `None` the server's again.
    pub fn set(&self, channel: &str, encoding: Option<&'static Encoding>) {
        let key = Casemapping::Rfc1459.fold(channel);
        let mut map = self.0.write().expect("not poisoned");
        match encoding {
            Some(encoding) => map.insert(key, encoding),
            None => map.remove(&key),
        };
    }

    /// The encoding of the channel a raw line is about: the first of its
    /// middle parameters that names a channel with an encoding of its own
    /// (`PRIVMSG #chan`, `332 nick #chan`, `KICK #chan nick`), whatever the
    /// server's channel prefixes are.
    pub fn of_line(&self, line: &[u8]) -> Option<&'static Encoding> {
        let map = self.0.read().expect("not poisoned");
        if map.is_empty() {
            return None;
        }
        middle_params(line).find_map(|param| {
            // Channel names are ASCII nearly everywhere; one that is not
            // is compared as the server's fallback would show it.
            let name = String::from_utf8_lossy(param);
            map.get(&Casemapping::Rfc1459.fold(&name)).copied()
        })
    }
}

/// The middle parameters of a raw IRC line: after the tags, the source and
/// the command, and before the trailing parameter.
fn middle_params(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
    let mut first = words.next();
    if first.is_some_and(|w| w.starts_with(b"@")) {
        first = words.next();
    }
    if first.is_some_and(|w| w.starts_with(b":")) {
        // The source; the command follows.
        words.next();
    }
    words.take_while(|w| !w.starts_with(b":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_takes_the_encoding_of_the_channel_it_names() {
        let encodings = ChannelEncodings::default();
        let koi8 = encoding_rs::KOI8_R;
        assert_eq!(encodings.of_line(b":bob!b@h PRIVMSG #ru :\xf0"), None);
        encodings.set("#RU", Some(koi8));
        for line in [
            &b":bob!b@h PRIVMSG #ru :\xf0\xd2\xc9"[..],
            b"@time=2026-01-01T00:00:00Z :bob!b@h PRIVMSG #Ru :\xf0",
            b":irc.example 332 alice #ru :\xf0",
            b":bob!b@h KICK #ru alice :\xf0",
            b"PRIVMSG #ru :\xf0",
        ] {
            assert_eq!(encodings.of_line(line), Some(koi8), "{line:?}");
        }
        // Only middle parameters count: not the text, not the source.
        assert_eq!(encodings.of_line(b":bob!b@h PRIVMSG alice :#ru \xf0"), None);
        assert_eq!(encodings.of_line(b":#ru PRIVMSG #other :\xf0"), None);
        assert_eq!(encodings.of_line(b":bob!b@h PRIVMSG #other :\xf0"), None);
        encodings.set("#ru", None);
        assert_eq!(encodings.of_line(b":bob!b@h PRIVMSG #ru :\xf0"), None);
    }
}

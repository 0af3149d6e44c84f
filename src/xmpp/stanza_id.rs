//! Ids the gateway gives the messages it shows (XEP-0359 stanza-id, and the
//! ids of corrections, retractions and reactions it relays).

use base64::alphabet::Alphabet;
use base64::engine::general_purpose::NO_PAD;
use base64::engine::GeneralPurpose;
use base64::Engine;

/// base64url's 64 characters in ASCII order, so that encoded ids sort as the
/// bytes they encode.
const ORDERED_URL_SAFE: Alphabet =
    match Alphabet::new("-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz") {
        Ok(alphabet) => alphabet,
        Err(_) => panic!("not a base64 alphabet"),
    };

const ENCODING: GeneralPurpose = GeneralPurpose::new(&ORDERED_URL_SAFE, NO_PAD);

/// A fresh id: a UUIDv7, so time-ordered, in 22 characters.
///
/// Time-ordered because the archive and the message-id map index these ids:
/// random (v4) ids land on a different B-tree page each, so every batched
/// commit rewrote hundreds of pages, while ordered ids append to the last
/// few. 74 random bits keep them unguessable all the same.
///
/// 22 characters rather than the UUID's usual 36 because each id is written
/// into every message twice (its `id` and its stanza-id), and Prosody 0.12
/// serializes a stanza's top-level attributes three times per routed stanza
/// (twice for debug log lines it builds even with debug logging off): in
/// `benches/prosody_stanza_cost.py`, the shorter ids cut Prosody's CPU per
/// relayed message by about 4 %, and the archive's rows and indexes shrink.
pub fn fresh() -> String {
    ENCODING.encode(uuid::Uuid::now_v7().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_short_and_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| fresh()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "duplicate ids");
        assert!(ids.iter().all(|id| id.len() == 22), "{ids:?}");
        // The first 8 characters carry 48 bits: the millisecond timestamp.
        assert!(ids.windows(2).all(|w| w[0][..8] <= w[1][..8]));
    }

    #[test]
    fn ids_sort_as_the_bytes_they_encode() {
        let mut pairs: Vec<([u8; 16], String)> = (0..2000)
            .map(|_| {
                let bytes = *uuid::Uuid::new_v4().as_bytes();
                (bytes, ENCODING.encode(bytes))
            })
            .collect();
        // Ids that differ only in their low bits, where an unordered alphabet
        // would misplace them.
        for last in [0u8, 1, 63, 64, 255] {
            let mut bytes = [0x5a; 16];
            bytes[15] = last;
            pairs.push((bytes, ENCODING.encode(bytes)));
        }
        let mut by_bytes = pairs.clone();
        by_bytes.sort_by_key(|a| a.0);
        let mut by_text = pairs;
        by_text.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(by_bytes, by_text);
    }

    #[test]
    fn ids_need_no_escaping_in_xml_or_urls() {
        let id = fresh();
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
    }
}

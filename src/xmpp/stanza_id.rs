//! Ids the gateway gives the messages it shows (XEP-0359 stanza-id, and the
//! ids of corrections, retractions and reactions it relays).

/// A fresh id: a UUIDv7, so time-ordered. The archive and the message-id map
/// index these ids; random (v4) ids land on a different B-tree page each, so
/// every batched commit rewrote hundreds of pages, while ordered ids append to
/// the last few. 74 random bits keep them unguessable all the same.
pub fn fresh() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| fresh()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "duplicate ids");
        // Within one millisecond v7 ids are ordered by their random tail only,
        // so compare the time prefix.
        assert!(ids.windows(2).all(|w| w[0][..13] <= w[1][..13]));
    }
}

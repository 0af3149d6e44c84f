//! Files linked from XMPP become Matrix media: fetched once by the gateway
//! (guarded as `estuary_fetch` describes), uploaded to the user's
//! homeserver, and sent as `m.image`, `m.video`, `m.audio` or `m.file`.

use serde_json::{json, Value};

pub use estuary_fetch::{fetch, FetchPolicy, FileInfo};

/// The `m.room.message` content for an uploaded file.
pub fn content(file: &FileInfo, name: Option<&str>, mxc: &str) -> Value {
    let msgtype = match file.content_type.split('/').next() {
        Some("image") => "m.image",
        Some("video") => "m.video",
        Some("audio") => "m.audio",
        _ => "m.file",
    };
    json!({
        "msgtype": msgtype,
        "body": name.unwrap_or(&file.name),
        "filename": file.name,
        "url": mxc,
        "info": { "mimetype": file.content_type, "size": file.size },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgtype_follows_the_content_type() {
        let fetched = |t: &str| FileInfo {
            name: "f".into(),
            content_type: t.into(),
            size: 3,
        };
        assert_eq!(
            content(&fetched("image/png"), None, "mxc://a/b")["msgtype"],
            "m.image"
        );
        assert_eq!(
            content(&fetched("audio/ogg"), None, "mxc://a/b")["msgtype"],
            "m.audio"
        );
        let file = content(&fetched("application/pdf"), Some("report"), "mxc://a/b");
        assert_eq!(file["msgtype"], "m.file");
        assert_eq!(file["body"], "report");
        assert_eq!(file["info"]["size"], 3);
    }
}

//! The user's own avatar, from their vCard (XEP-0054, which XEP-0153
//! clients keep up to date), for networks that show it next to what the
//! user writes (Discord webhooks).

use std::time::Duration;

use estuary_bridge::Avatar;
use tracing::debug;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::vcard::{VCard, VCardQuery};

use crate::gateway::Gateway;

/// How long the user's server may take to answer.
const VCARD_WAIT: Duration = Duration::from_secs(5);
/// Larger photos are not passed on: networks take small avatars.
const MAX_AVATAR_BYTES: usize = 1024 * 1024;

/// The photo of `user`'s vCard, if they have one the gateway may read.
pub(super) async fn fetch(gw: &Gateway, user: &BareJid) -> Option<Avatar> {
    let answer = gw
        .request(
            Jid::from(user.clone()),
            Element::from(VCardQuery),
            VCARD_WAIT,
        )
        .await?;
    let photo = VCard::try_from(answer).ok()?.photo?;
    let content_type = photo.type_.data;
    let bytes = photo.binval.data;
    if !content_type.starts_with("image/") || bytes.is_empty() || bytes.len() > MAX_AVATAR_BYTES {
        debug!(%content_type, size = bytes.len(), "the vCard photo is not a usable avatar");
        return None;
    }
    Some(Avatar {
        content_type,
        bytes,
    })
}

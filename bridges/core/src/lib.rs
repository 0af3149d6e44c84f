//! The common bridge trait of Estuary and its neutral event model.
//!
//! A network (IRC, Matrix, Discord) plugs into the gateway core by implementing
//! [`Network`] (one per gateway domain) and [`Session`] (one per logged-in user).
//! Everything that crosses this boundary is neutral: no XMPP stanza, no database
//! type, no IRC line. The core turns XMPP stanzas into [`Session`] calls, and
//! turns the [`RemoteEvent`]s a session pushes back into stanzas.
//!
//! The shape follows mautrix-go's bridgev2 (a per-network connector plus a
//! per-login client) and slidge (one method per kind of outgoing action).

mod address;
mod error;
mod event;
pub mod mailbox;
mod network;
mod registration;
mod session;
pub mod tcp;

pub use address::{AddressKind, RemoteAddress};
pub use error::BridgeError;
pub use event::{
    Affiliation, Attachment, ChatState, EventPermit, EventSender, JoinRefusal, MessageKind,
    NickRefusal, Occupant, PresenceShow, RemoteEvent, RemoteMessage, RemotePresence, Role,
    SendRefusal,
};
pub use network::{Capabilities, Network, NetworkInfo};
pub use registration::{Credentials, FieldKind, FormValues, RegistrationField};
pub use session::{
    Avatar, Ban, ContactInfo, Later, OutgoingMessage, RoomConfig, RoomInfo, Session, Software,
};

//! Stanza-level XMPP: addressing, errors, and one module per extension handled.
//! Nothing here talks to a network or a database.

pub mod address;
pub mod adhoc;
pub mod errors;
pub mod escape;
pub mod forms;
pub mod history;
pub mod invite;
pub mod mam;
pub mod message;
pub mod muc;
pub mod muc_admin;
pub mod muc_owner;
pub mod privilege;
pub mod register;
pub mod rsm;
pub mod service;
pub mod stanza_id;
pub mod wire;
pub mod xml;

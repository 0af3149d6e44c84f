//! Estuary: an XMPP gateway component (XEP-0114) bridging to IRC, Matrix and Discord.
//!
//! Data flows one way through the core: the [`component`] link delivers a
//! stanza, the [`router`] of its gateway domain checks who sent it and turns
//! it into a neutral call on a bridge [`estuary_bridge::Session`]; the session
//! talks to its network and pushes [`estuary_bridge::RemoteEvent`]s back,
//! which the user's task turns into stanzas. IDs are mapped through the [`store`].

pub mod access;
pub mod admin;
pub mod app;
pub mod archive;
pub mod biboumi;
pub mod component;
pub mod config;
pub mod gateway;
pub mod link_socket;
pub mod message_map;
pub mod networks;
pub mod registration;
pub mod reload;
pub mod router;
pub mod shutdown;
pub mod store;
pub mod user;
pub mod xmpp;

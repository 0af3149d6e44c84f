-- Attaching Estuary's gateways to Prosody 0.12 (a snippet, not a whole file).
--
-- Each [[gateway]] of estuary.toml is one external component (XEP-0114):
-- declare it here with the same domain and the same secret. Merge the
-- global part into /etc/prosody/prosody.cfg.lua above the first
-- VirtualHost, and the Component blocks at the end, then check and reload:
--
--   prosodyctl check config
--   prosodyctl reload        # or: systemctl restart prosody
--
-- Nothing needs to be added to modules_enabled: external components are
-- built into Prosody; the component port opens as soon as one Component
-- without a module is defined.

---------------------------------------------------------------------------
-- Global section (must come before any VirtualHost or Component line)
---------------------------------------------------------------------------

-- The port Estuary connects to ([component] server in estuary.toml).
component_ports = { 5347 }

-- The component protocol is plaintext: only the handshake is hashed, every
-- stanza (messages, registration passwords, ...) crosses the link in clear.
-- Keep it on loopback when Estuary runs on the same machine. If it must
-- cross a network, use a private link (WireGuard, SSH tunnel) and never a
-- public interface.
component_interfaces = { "127.0.0.1" }

-- Turn Nagle's algorithm off (TCP_NODELAY). A gateway link carries many
-- small stanzas; with Nagle on, a stanza written while the previous one is
-- unacknowledged waits for the peer's delayed ACK, which adds about 20 ms
-- per message on average (measured with benches/irc_load.rs). This applies
-- to all of Prosody's connections and costs nothing noticeable.
network_settings = { nagle = false }

---------------------------------------------------------------------------
-- Your existing virtual host (shown for context)
---------------------------------------------------------------------------

VirtualHost "example.org"
    -- Optional: let the gateways put contacts straight into users' rosters
    -- (XEP-0356), instead of sending a subscription request per contact.
    -- Needs mod_privilege (Debian: apt install prosody-modules), enabled
    -- here and in each Component block below, e.g.
    --   modules_enabled = { "privilege" }
    --   privileged_entities = {
    --       ["matrix.example.org"] = { roster = "both" };
    --       ["discord.example.org"] = { roster = "both" };
    --   }
    -- Estuary writes a roster only to add or remove its own gateway and
    -- contacts.

    -- Prosody lists every Component that is a subdomain of a VirtualHost
    -- (irc.example.org here) in the host's service discovery by itself, so
    -- clients find the gateways under "Services" without anything more. A
    -- gateway on an unrelated domain would need to be listed by hand:
    --   disco_items = { { "irc.other-domain.net", "IRC gateway" } }

---------------------------------------------------------------------------
-- One Component per [[gateway]] (domain and secret must match estuary.toml)
---------------------------------------------------------------------------
-- Generate secrets with e.g. `openssl rand -hex 24`. This file holds them
-- in clear: keep it readable by root and the prosody group only (Debian's
-- default).
--
-- Users of example.org reach the gateways directly. Users of other servers
-- (if you allow them in estuary.toml) reach them over s2s, which needs DNS
-- for the gateway domain (an A/AAAA record or an _xmpp-server._tcp SRV
-- record pointing at this server) and a certificate covering it.

Component "irc.example.org"
    component_secret = "change-me-irc-secret"

Component "matrix.example.org"
    component_secret = "change-me-matrix-secret"
    -- With the roster privilege above:
    --   modules_enabled = { "privilege" }

Component "discord.example.org"
    component_secret = "change-me-discord-secret"

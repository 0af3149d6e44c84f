-- Registered users and what the bridge needs to log them in.
-- credentials is JSON text: it may hold passwords and tokens.
CREATE TABLE accounts (
    gateway     TEXT    NOT NULL,
    jid         TEXT    NOT NULL,
    credentials TEXT    NOT NULL,
    settings    TEXT    NOT NULL DEFAULT '{}',
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (gateway, jid)
);

-- Remote message <-> XMPP ids, scoped to gateway, account and chat.
-- chat is the remote room or contact address; sender is who wrote it
-- ('' for the account's own messages), so that corrections and retractions
-- can only ever touch messages of the one who asks.
CREATE TABLE message_map (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway     TEXT    NOT NULL,
    account     TEXT    NOT NULL,
    chat        TEXT    NOT NULL,
    remote_id   TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    xmpp_id     TEXT,
    stanza_id   TEXT    NOT NULL,
    origin_id   TEXT,
    created_at  BIGINT  NOT NULL,
    UNIQUE (gateway, account, chat, remote_id)
);
CREATE INDEX message_map_by_xmpp_id   ON message_map (gateway, account, chat, xmpp_id);
CREATE INDEX message_map_by_stanza_id ON message_map (gateway, account, chat, stanza_id);
CREATE INDEX message_map_by_origin_id ON message_map (gateway, account, chat, origin_id);

-- Rooms a user has joined or configured, with settings as JSON text.
CREATE TABLE rooms (
    gateway     TEXT    NOT NULL,
    account     TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    nick        TEXT    NOT NULL DEFAULT '',
    settings    TEXT    NOT NULL DEFAULT '{}',
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (gateway, account, room)
);

-- The room archive served through MAM.
CREATE TABLE archive (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway     TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    stanza_id   TEXT    NOT NULL,
    remote_id   TEXT,
    nick        TEXT    NOT NULL,
    sender      TEXT,
    body        TEXT    NOT NULL,
    ts_ms       BIGINT  NOT NULL,
    UNIQUE (gateway, room, stanza_id)
);
CREATE INDEX archive_by_time ON archive (gateway, room, ts_ms);

-- Work accepted but not yet acknowledged by its destination, replayed after
-- a restart. kind says which side it goes to ('remote' or 'xmpp').
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway     TEXT    NOT NULL,
    account     TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX outbox_by_account ON outbox (gateway, account, id);

-- Per-user settings of a remote room (persistent, record history) or of a
-- remote server (the bridge's own fields), kept whether or not the user is
-- connected there, as JSON text.
CREATE TABLE address_settings (
    gateway     TEXT    NOT NULL,
    account     TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    settings    TEXT    NOT NULL DEFAULT '{}',
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (gateway, account, address)
);

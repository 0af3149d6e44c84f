-- Per-user settings of a remote room (persistent, record history), kept
-- whether or not the user is in the room, as JSON text.
CREATE TABLE room_settings (
    gateway     TEXT    NOT NULL,
    account     TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    settings    TEXT    NOT NULL DEFAULT '{}',
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (gateway, account, room)
);

-- Each archived room gets a small integer key, and archive rows carry it
-- instead of the gateway's and the room's names. The names were repeated in
-- every row and in each of its four index entries, and comparing them was a
-- quarter of SQLite's time on each insert.
CREATE TABLE archive_rooms (
    id          INTEGER PRIMARY KEY,
    gateway     TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    UNIQUE (gateway, room)
);
INSERT INTO archive_rooms (gateway, room)
SELECT DISTINCT gateway, room FROM archive ORDER BY gateway, room;

-- SQLite cannot drop the columns of a UNIQUE constraint: the table is
-- rebuilt, keeping every row id (MAM's order and paging positions).
CREATE TABLE archive_by_room_id (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id     INTEGER NOT NULL,
    stanza_id   TEXT    NOT NULL,
    remote_id   TEXT,
    nick        TEXT    NOT NULL,
    sender      TEXT,
    body        TEXT    NOT NULL,
    ts_ms       BIGINT  NOT NULL
);
INSERT INTO archive_by_room_id (id, room_id, stanza_id, remote_id, nick, sender, body, ts_ms)
SELECT a.id, r.id, a.stanza_id, a.remote_id, a.nick, a.sender, a.body, a.ts_ms
FROM archive a JOIN archive_rooms r ON r.gateway = a.gateway AND r.room = a.room
ORDER BY a.id;
-- AUTOINCREMENT's high-water mark too, so that no row id is ever given twice.
DELETE FROM sqlite_sequence WHERE name = 'archive_by_room_id';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'archive_by_room_id', seq FROM sqlite_sequence WHERE name = 'archive';
DROP TABLE archive;
ALTER TABLE archive_by_room_id RENAME TO archive;

CREATE UNIQUE INDEX archive_by_stanza_id ON archive (room_id, stanza_id);
CREATE UNIQUE INDEX archive_by_remote_id ON archive (room_id, remote_id);
CREATE INDEX archive_by_time ON archive (room_id, ts_ms);
CREATE INDEX archive_by_row ON archive (room_id, id);

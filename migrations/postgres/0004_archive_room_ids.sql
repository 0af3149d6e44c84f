-- Each archived room gets a small integer key, and archive rows carry it
-- instead of the gateway's and the room's names, which were repeated in
-- every row and in each of its four index entries. Row ids are kept: they
-- are MAM's order and paging positions.
CREATE TABLE archive_rooms (
    id          BIGSERIAL PRIMARY KEY,
    gateway     TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    UNIQUE (gateway, room)
);
INSERT INTO archive_rooms (gateway, room)
SELECT DISTINCT gateway, room FROM archive ORDER BY gateway, room;

ALTER TABLE archive ADD COLUMN room_id BIGINT;
UPDATE archive a SET room_id = r.id
FROM archive_rooms r WHERE r.gateway = a.gateway AND r.room = a.room;
ALTER TABLE archive ALTER COLUMN room_id SET NOT NULL;

-- Dropping the columns drops the indexes and the unique key built on them.
ALTER TABLE archive DROP COLUMN gateway, DROP COLUMN room;
CREATE UNIQUE INDEX archive_by_stanza_id ON archive (room_id, stanza_id);
CREATE UNIQUE INDEX archive_by_remote_id ON archive (room_id, remote_id);
CREATE INDEX archive_by_time ON archive (room_id, ts_ms);
CREATE INDEX archive_by_row ON archive (room_id, id);

-- A remote message seen by several users of one room is archived once: keep
-- the first copy of any duplicate already there, then forbid new ones.
DELETE FROM archive
WHERE remote_id IS NOT NULL
  AND id NOT IN (
    SELECT MIN(id) FROM archive
    WHERE remote_id IS NOT NULL
    GROUP BY gateway, room, remote_id
  );
CREATE UNIQUE INDEX archive_by_remote_id ON archive (gateway, room, remote_id);

-- MAM and history page through one room in row order.
CREATE INDEX archive_by_row ON archive (gateway, room, id);

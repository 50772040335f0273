-- SQLite's text of the publish/subscribe message queries that differ by dialect.
-- postgres/messages.sql defines the same names (tests/unit/test_sql_names.py checks it).
-- Every write runs inside BEGIN IMMEDIATE, so no row locks are needed.

-- name: message_publish
INSERT INTO kojo_message (channel, payload, kojo_process_id, created_at_date_time)
VALUES (:channel, :payload, :kojo_process_id, :now)
RETURNING kojo_message_id

-- The messages of `channel` among `ids` (a JSON array); the caller orders them.

-- name: message_get_many
SELECT kojo_message_id, payload FROM kojo_message
WHERE channel = :channel AND kojo_message_id IN (SELECT value FROM json_each(:ids))

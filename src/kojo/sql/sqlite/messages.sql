-- SQLite's text of the publish/subscribe message queries that differ by dialect.
-- postgres/messages.sql defines the same names (tests/unit/test_sql_names.py checks it).
-- Every write runs inside BEGIN IMMEDIATE, so no row locks are needed.

-- name: message_publish
INSERT INTO kojo_message (channel, payload, kojo_process_id, created_at_date_time)
VALUES (:channel, :payload, :kojo_process_id, :now)
RETURNING kojo_message_id

-- PostgreSQL versions of queries whose text differs from messages.sql.

-- name: message_insert
INSERT INTO kojo_message (channel, payload, kojo_process_id, created_at_date_time)
VALUES (:channel, CAST(:payload AS json), :kojo_process_id, :now)
RETURNING kojo_message_id

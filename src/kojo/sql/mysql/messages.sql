-- MySQL's text of the publish/subscribe message queries that differ by dialect.

-- name: message_publish
INSERT INTO kojo_message (channel, payload, kojo_process_id, created_at_date_time)
VALUES (:channel, :payload, :kojo_process_id, :now)
RETURNING kojo_message_id

-- name: message_get_many
SELECT kojo_message_id, payload FROM kojo_message
WHERE channel = :channel AND kojo_message_id IN (
    SELECT id FROM JSON_TABLE(:ids, '$[*]' COLUMNS (id bigint PATH '$')) AS i)

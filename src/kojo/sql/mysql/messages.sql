-- MySQL's text of the publish/subscribe message queries that differ by dialect.

-- Publishers take turns until commit (kojo_message_order), so message ids are in commit
-- order: subscribers read past the last id they saw (wake-ups here are hints).

-- name: message_publish
SELECT id FROM kojo_message_order WHERE id = 1 FOR UPDATE;
INSERT INTO kojo_message (channel, payload, kojo_process_id, created_at_date_time)
VALUES (:channel, :payload, :kojo_process_id, :now)
RETURNING kojo_message_id

-- name: message_get_many
SELECT kojo_message_id, payload FROM kojo_message
WHERE channel = :channel AND kojo_message_id IN (
    SELECT id FROM JSON_TABLE(:ids, '$[*]' COLUMNS (id bigint PATH '$')) AS i)

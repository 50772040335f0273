-- Publish/subscribe messages (ipc.py, docs/ipc.md).

-- name: message_last_id
SELECT max(kojo_message_id) AS last_id FROM kojo_message WHERE channel = :channel

-- name: message_after
SELECT kojo_message_id, payload FROM kojo_message
WHERE channel = :channel AND kojo_message_id > :after
ORDER BY kojo_message_id
LIMIT :limit

-- For maintenance: messages older than `before` are gone for late readers.

-- name: message_delete_before
DELETE FROM kojo_message WHERE created_at_date_time < :before

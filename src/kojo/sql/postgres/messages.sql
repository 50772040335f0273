-- PostgreSQL's text of the publish/subscribe message queries that differ by dialect.
-- sqlite/messages.sql defines the same names (tests/unit/test_sql_names.py checks it).

-- Insert and wake in one statement (one round trip): the NOTIFY is sent at
-- commit, in the same format as Backend.notify ('["message", data]'). It carries
-- the message's id and channel only, never the message: any role that can connect
-- can LISTEN, but only one that can read kojo_message reads the message.

-- name: message_publish
WITH message AS (
    INSERT INTO kojo_message (channel, payload, kojo_process_id, created_at_date_time)
    VALUES (:channel, CAST(:payload AS json), CAST(:kojo_process_id AS bigint), :now)
    RETURNING kojo_message_id, channel
)
SELECT kojo_message_id,
    pg_notify(:notify_channel, json_build_array('message', json_build_object(
        'id', kojo_message_id, 'channel', channel)::text)::text) AS notified
FROM message

-- The messages of `channel` among `ids` (a JSON array), for a subscriber woken by
-- their notifications (which name them in commit order: the caller orders them).

-- name: message_get_many
SELECT kojo_message_id, payload FROM kojo_message
WHERE channel = :channel
    AND kojo_message_id = ANY(ARRAY(
        SELECT CAST(value AS bigint) FROM json_array_elements_text(CAST(:ids AS json))))

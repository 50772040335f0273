-- PostgreSQL versions of queries whose text differs from messages.sql.

-- name: message_insert
INSERT INTO kojo_message (channel, payload, kojo_process_id, created_at_date_time)
VALUES (:channel, CAST(:payload AS json), :kojo_process_id, :now)
RETURNING kojo_message_id

-- Insert and wake in one statement (one round trip): the NOTIFY is sent at
-- commit, in the same format as Backend.notify ('["message", data]'). The
-- message rides inside when the notification stays under :inline_limit bytes.

-- name: message_publish
WITH input AS (
    SELECT CAST(:channel AS text) AS channel, CAST(:payload AS json) AS payload
), message AS (
    INSERT INTO kojo_message (channel, payload, kojo_process_id, created_at_date_time)
    SELECT channel, payload, CAST(:kojo_process_id AS bigint), :now FROM input
    RETURNING kojo_message_id, channel, payload
), wake AS (
    SELECT kojo_message_id,
        json_build_array('message', json_build_object(
            'id', kojo_message_id, 'channel', channel, 'message', payload)::text)::text AS inline,
        json_build_array('message', json_build_object(
            'id', kojo_message_id, 'channel', channel)::text)::text AS bare
    FROM message
)
SELECT kojo_message_id,
    pg_notify(:notify_channel,
        CASE WHEN octet_length(inline) < :inline_limit THEN inline ELSE bare END) AS notified
FROM wake

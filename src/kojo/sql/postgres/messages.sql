-- PostgreSQL's text of the publish/subscribe message queries that differ by dialect.
-- sqlite/messages.sql defines the same names (tests/unit/test_sql_names.py checks it).

-- Insert and wake in one statement (one round trip): the NOTIFY is sent at
-- commit, in the same format as Backend.notify ('["message", data]'). The
-- message rides inside when the notification stays under 7,900 bytes (NOTIFY
-- refuses 8,000 or more).

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
        CASE WHEN octet_length(inline) < 7900 THEN inline ELSE bare END) AS notified
FROM wake

-- Publish/subscribe messages (ipc.py, docs/ipc.md).

-- name: message_last_id
SELECT max(kojo_message_id) AS last_id FROM kojo_message WHERE channel = :channel

-- name: message_after
SELECT kojo_message_id, payload FROM kojo_message
WHERE channel = :channel AND kojo_message_id > :after
ORDER BY kojo_message_id
LIMIT :limit

-- name: message_get
SELECT kojo_message_id, payload FROM kojo_message WHERE kojo_message_id = :kojo_message_id

-- For maintenance: messages older than `before` are gone for late readers.

-- name: message_delete_before
DELETE FROM kojo_message WHERE created_at_date_time < :before

-- Cluster control: every working job with the process that claimed it.

-- name: control_running_jobs
SELECT j.kojo_job_id, j.type_code, j.kojo_process_id, j.last_transition_date_time,
    j.times_worked, p.host_name, p.process_id, p.kind
FROM kojo_job j JOIN kojo_process p ON p.kojo_process_id = j.kojo_process_id
WHERE j.assigned_state = 'working'
ORDER BY p.host_name, j.kojo_job_id

-- PostgreSQL versions of queries whose text differs from queries.sql.

-- name: job_claim
WITH candidate AS (
    SELECT kojo_job_id, type_code, can_work_in_parallel, priority, work_at_date_time
    FROM kojo_job c
    WHERE c.next_state_request = 'working' AND c.assigned_state IN ('waiting', 'crashed')
      AND c.work_at_date_time <= :now
      AND c.type_code NOT IN (SELECT type_code FROM kojo_job_type WHERE is_paused)
      AND (c.can_work_in_parallel OR NOT EXISTS (
          SELECT 1 FROM kojo_job w WHERE w.type_code = c.type_code
            AND w.assigned_state = 'working' AND NOT w.can_work_in_parallel))
    ORDER BY c.priority DESC, c.work_at_date_time, c.kojo_job_id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT kojo_job_id, can_work_in_parallel, row_number() OVER (
        PARTITION BY type_code ORDER BY priority DESC, work_at_date_time, kojo_job_id) AS rank
    FROM candidate
)
UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none',
    previous_state = kojo_job.assigned_state, times_worked = kojo_job.times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
FROM chosen
WHERE kojo_job.kojo_job_id = chosen.kojo_job_id
  AND (chosen.can_work_in_parallel OR chosen.rank = 1)
RETURNING kojo_job.*

-- name: owner_probe
SELECT pg_try_advisory_xact_lock(:namespace, CAST(:kojo_process_id AS integer)) AS dead

-- name: job_insert_batch
INSERT INTO kojo_job (
    type_code, name, priority, importance, work_at_date_time, next_state_request,
    assigned_state, previous_state, worker_uri, can_work_in_parallel,
    last_transition_date_time, created_at_date_time, payload
)
SELECT t.type_code, t.name, coalesce(CAST(:importance AS integer), t.default_importance),
    coalesce(CAST(:importance AS integer), t.default_importance), :work_at,
    CASE WHEN t.schedule_limit > 0 THEN 'schedule_limit_check' ELSE 'working' END,
    'waiting', 'new', t.worker_uri, t.can_work_in_parallel, :now, :now, CAST(p.payload AS jsonb)
FROM kojo_job_type t,
    jsonb_array_elements_text(CAST(:payloads AS jsonb)) WITH ORDINALITY AS p(payload, n)
WHERE t.type_code = :type_code AND t.is_enabled
ORDER BY p.n
RETURNING kojo_job_id

-- name: job_complete_success
UPDATE kojo_job SET assigned_state = 'complete_success', next_state_request = 'none',
    previous_state = 'working', last_transition_date_time = :now,
    completed_at_date_time = :now, delete_after_date_time = :delete_after
WHERE kojo_job_id = ANY(CAST(:ids AS bigint[]))
  AND assigned_state = 'working' AND kojo_process_id = :owner

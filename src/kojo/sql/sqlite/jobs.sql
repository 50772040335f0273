-- SQLite's text of the job, job type, schema and process queries that differ by dialect.
-- postgres/jobs.sql defines the same names (tests/unit/test_sql_names.py checks it).
-- Every write runs inside BEGIN IMMEDIATE, so no row locks are needed.

-- name: job_claim
WITH candidate AS (
    SELECT kojo_job_id, type_code, can_work_in_parallel, priority, work_at_date_time
    FROM kojo_job c
    WHERE c.next_state_request = 'working' AND c.assigned_state IN ('waiting', 'crashed')
      AND c.work_at_date_time <= :now
      AND c.type_code NOT IN (SELECT type_code FROM kojo_job_type WHERE is_paused)
      AND (c.can_work_in_parallel OR NOT EXISTS (
          SELECT 1 FROM kojo_job w WHERE w.type_code = c.type_code
            AND w.assigned_state = 'working' AND w.can_work_in_parallel = 0))
      -- A reaped owner claims nothing (backend.job_claim then asks why, and stops).
      AND EXISTS (SELECT 1 FROM kojo_process p WHERE p.kojo_process_id = :owner)
    ORDER BY c.priority DESC, c.work_at_date_time, c.kojo_job_id
    LIMIT :limit
), chosen AS (
    SELECT kojo_job_id, can_work_in_parallel, row_number() OVER (
        PARTITION BY type_code ORDER BY priority DESC, work_at_date_time, kojo_job_id) AS rank
    FROM candidate
)
UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none',
    previous_state = assigned_state, times_worked = times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
FROM chosen
WHERE kojo_job.kojo_job_id = chosen.kojo_job_id
  AND (chosen.can_work_in_parallel OR chosen.rank = 1)
RETURNING *

-- name: job_insert_batch
INSERT INTO kojo_job (
    type_code, name, priority, importance, work_at_date_time, next_state_request,
    assigned_state, previous_state, worker_uri, can_work_in_parallel,
    last_transition_date_time, created_at_date_time, payload
)
SELECT t.type_code, t.name, coalesce(:importance, t.default_importance),
    coalesce(:importance, t.default_importance), :work_at,
    CASE WHEN t.schedule_limit > 0 THEN 'schedule_limit_check' ELSE 'working' END,
    'waiting', 'new', t.worker_uri, t.can_work_in_parallel, :now, :now, p.value
FROM kojo_job_type t, json_each(:payloads) AS p
WHERE t.type_code = :type_code AND t.is_enabled
ORDER BY p.key
RETURNING kojo_job_id

-- First statement of a claim's transaction: is this owner still registered? (A reaped
-- owner's row is gone, and its claims must not go on.) PostgreSQL also asks its anchor.

-- name: owner_vouch
SELECT count(*) AS vouched FROM kojo_process WHERE kojo_process_id = :owner

-- name: job_complete_success
-- :ids is a JSON array of job ids; jobs no longer claimed by :owner are left alone.
UPDATE kojo_job SET assigned_state = 'complete_success', next_state_request = 'none',
    previous_state = 'working', last_transition_date_time = :now,
    completed_at_date_time = :now, delete_after_date_time = :delete_after
WHERE kojo_job_id IN (SELECT value FROM json_each(:ids))
  AND assigned_state = 'working' AND kojo_process_id = :owner

-- PostgreSQL's text of the job, job type, schema and process queries that differ by dialect.
-- sqlite/jobs.sql defines the same names (tests/unit/test_sql_names.py checks it).

-- name: job_claim
-- Never waits, so it can never be part of a deadlock: candidate jobs are taken with
-- SKIP LOCKED, and so is the type row of each serial type among them. Whoever moves a
-- job of a serial type into or out of `working` holds that row (job_type_lock), so a
-- claim never picks a serial type whose working job is being changed, and its insert
-- into kojo_job_serial_working never waits on another transaction. (A candidate that
-- fails SKIP LOCKED's re-check stays locked until commit: harmless, as nothing here
-- waits afterwards.)
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
), serial_type AS (
    SELECT type_code FROM kojo_job_type
    WHERE type_code IN (SELECT type_code FROM candidate WHERE NOT can_work_in_parallel)
    FOR NO KEY UPDATE SKIP LOCKED
), chosen AS (
    SELECT kojo_job_id, can_work_in_parallel, row_number() OVER (
        PARTITION BY type_code ORDER BY priority DESC, work_at_date_time, kojo_job_id) AS rank
    FROM candidate
    WHERE can_work_in_parallel OR type_code IN (SELECT type_code FROM serial_type)
)
UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none',
    previous_state = kojo_job.assigned_state, times_worked = kojo_job.times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
FROM chosen
WHERE kojo_job.kojo_job_id = chosen.kojo_job_id
  AND (chosen.can_work_in_parallel OR chosen.rank = 1)
RETURNING kojo_job.*

-- name: owner_vouch
SELECT EXISTS (SELECT 1 FROM kojo_process WHERE kojo_process_id = :owner)
    AND NOT pg_try_advisory_xact_lock(:namespace, CAST(:owner AS integer)) AS vouched

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

-- Operator commands (backends/operator_store.py): `kojo stats`, `jobs list` paging,
-- `jobs why`, `jobs purge`. The same text in both dialects.

-- name: job_page
-- Newest first; :before pages back (ids below it). A cron job made ahead of its minute
-- (waiting for a minute still to come) is left out unless :future_cron; one retried for
-- later is not (its minute has passed).
SELECT * FROM kojo_job
WHERE (CAST(:type_code AS text) IS NULL OR type_code = :type_code)
  AND (CAST(:state AS text) IS NULL OR assigned_state = :state)
  AND (CAST(:before AS bigint) IS NULL OR kojo_job_id < :before)
  AND (:future_cron OR cron_fire_date_time IS NULL OR assigned_state <> 'waiting'
    OR cron_fire_date_time <= :now)
ORDER BY kojo_job_id DESC
LIMIT :limit

-- name: job_state_few
-- Whether a state has few jobs: its jobs counted up to :few, through the
-- kojo_job_type_state index (a range per type: every job's type is in kojo_job_type).
SELECT count(*) AS jobs FROM (
    SELECT 1 AS one FROM kojo_job
    WHERE type_code IN (SELECT type_code FROM kojo_job_type) AND assigned_state = :state
    LIMIT :few) AS f

-- name: job_page_few
-- job_page for a state that has few jobs: read through the kojo_job_type_state index (a
-- range per type), then sorted. job_page walks the ids down and reads every newer job of
-- another state first: 1,000,000 finished jobs before the first panicked one.
SELECT * FROM kojo_job
WHERE type_code IN (SELECT type_code FROM kojo_job_type) AND assigned_state = :state
  AND (CAST(:type_code AS text) IS NULL OR type_code = :type_code)
  AND (CAST(:before AS bigint) IS NULL OR kojo_job_id < :before)
  AND (:future_cron OR cron_fire_date_time IS NULL OR assigned_state <> 'waiting'
    OR cron_fire_date_time <= :now)
ORDER BY kojo_job_id DESC
LIMIT :limit

-- name: job_page_future_cron
-- How many jobs job_page leaves out as cron jobs made ahead of time.
SELECT count(*) AS future FROM kojo_job
WHERE (CAST(:type_code AS text) IS NULL OR type_code = :type_code)
  AND (CAST(:state AS text) IS NULL OR assigned_state = :state)
  AND (CAST(:before AS bigint) IS NULL OR kojo_job_id < :before)
  AND cron_fire_date_time > :now AND assigned_state = 'waiting'

-- name: job_stats
SELECT type_code, assigned_state, count(*) AS count FROM kojo_job
GROUP BY type_code, assigned_state
ORDER BY type_code, assigned_state

-- name: job_purge_count
SELECT count(*) AS purged FROM kojo_job
WHERE assigned_state IN ('complete_success', 'complete_failed',
      'complete_failed_schedule_limit_check', 'complete_terminated')
  AND (CAST(:state AS text) IS NULL OR assigned_state = :state)
  AND (CAST(:type_code AS text) IS NULL OR type_code = :type_code)
  AND completed_at_date_time <= :cutoff

-- name: job_purge
-- One batch. The state test is on the outer DELETE too: a job re-run meanwhile (`jobs
-- retry`) is re-checked there and kept. Its dependency rows as a child go with it (ON
-- DELETE CASCADE); as a parent it has none left, as a job's end settles its children.
DELETE FROM kojo_job
WHERE assigned_state IN ('complete_success', 'complete_failed',
      'complete_failed_schedule_limit_check', 'complete_terminated')
  AND kojo_job_id IN (
    SELECT kojo_job_id FROM kojo_job
    WHERE assigned_state IN ('complete_success', 'complete_failed',
          'complete_failed_schedule_limit_check', 'complete_terminated')
      AND (CAST(:state AS text) IS NULL OR assigned_state = :state)
      AND (CAST(:type_code AS text) IS NULL OR type_code = :type_code)
      AND completed_at_date_time <= :cutoff
    ORDER BY kojo_job_id
    LIMIT :batch)

-- name: job_parent_states
-- The jobs a job still waits for (schedule(after=)), with their states (NULL: deleted).
SELECT d.parent_id, j.assigned_state FROM kojo_job_dependency d
LEFT JOIN kojo_job j ON j.kojo_job_id = d.parent_id
WHERE d.child_id = :kojo_job_id
ORDER BY d.parent_id

-- name: job_working_of_type
-- The working jobs of a type (a serial type has at most one) and their processes.
SELECT j.kojo_job_id, p.host_name, p.process_id, p.path FROM kojo_job j
LEFT JOIN kojo_process p ON p.kojo_process_id = j.kojo_process_id
WHERE j.type_code = :type_code AND j.assigned_state = 'working'
ORDER BY j.kojo_job_id
LIMIT 10

-- name: job_lock_waits
-- The locks a job waits for, each with its current holders (none: a slot is free).
SELECT w.name, w.since_date_time, s.slot, s.kojo_job_id AS holder_job_id, p.host_name,
    p.process_id, p.path
FROM kojo_semaphore_waiter w
LEFT JOIN kojo_semaphore_slot s ON s.name = w.name AND s.kojo_process_id IS NOT NULL
LEFT JOIN kojo_process p ON p.kojo_process_id = s.kojo_process_id
WHERE w.kojo_job_id = :kojo_job_id
ORDER BY w.kojo_semaphore_waiter_id, s.slot

-- name: job_events
-- A job's recorded transitions, oldest first, with the path of the process named (while
-- it is registered).
SELECT e.at_date_time, e.transition, e.from_state, e.to_state, e.actor, e.kojo_process_id,
    p.path, e.note
FROM kojo_job_event e
LEFT JOIN kojo_process p ON p.kojo_process_id = e.kojo_process_id
WHERE e.kojo_job_id = :kojo_job_id
ORDER BY e.kojo_job_event_id

-- name: job_search
-- job_page's filters and a text in the payload, among the jobs from :lowest (the
-- window's lowest id, job_search_window's) to below :before: a scan of a bounded window,
-- so a page costs the same at any table size. A range of ids: with `kojo_job_id IN (the
-- window's ids)`, PostgreSQL tested the payload of every job in the table before
-- reading the window. `< COALESCE(...)`, not `:before IS NULL OR < :before`, so that
-- SQLite reads it as a range too.
SELECT * FROM kojo_job
WHERE kojo_job_id >= :lowest
  AND kojo_job_id < COALESCE(CAST(:before AS bigint), 9223372036854775807)
  AND {{payload_has}}
  AND (CAST(:type_code AS text) IS NULL OR type_code = :type_code)
  AND (CAST(:state AS text) IS NULL OR assigned_state = :state)
ORDER BY kojo_job_id DESC
LIMIT :limit

-- name: job_search_window
-- The window job_search scans: the :scan newest jobs below :before, its lowest id and
-- how many (fewer than :scan: no older jobs are left).
SELECT min(kojo_job_id) AS lowest, count(*) AS scanned FROM (
    SELECT kojo_job_id FROM kojo_job
    WHERE kojo_job_id < COALESCE(CAST(:before AS bigint), 9223372036854775807)
    ORDER BY kojo_job_id DESC
    LIMIT :scan) AS w

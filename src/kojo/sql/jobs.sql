-- Job, job type, schema and process queries, the same text in both dialects. Parameters
-- are :name. Queries whose text differs are in sqlite/jobs.sql and postgres/jobs.sql.
-- Column names in SET lists are never taken from user input.

-- name: schema_version_create
CREATE TABLE IF NOT EXISTS kojo_schema_version (
    version integer PRIMARY KEY,
    applied_at_date_time text NOT NULL
)

-- name: schema_version_get
SELECT coalesce(max(version), 0) AS version FROM kojo_schema_version

-- name: schema_version_set
INSERT INTO kojo_schema_version (version, applied_at_date_time) VALUES (:version, :now)

-- name: type_upsert
INSERT INTO kojo_job_type (
    type_code, name, worker_uri, cron_expression, can_work_in_parallel, default_importance,
    schedule_limit, schedule_limit_allowance, is_enabled, auto_complete_success,
    auto_delete_interval_duration, max_retries, max_crashes, timeout, catch_up, catch_up_window,
    concurrency_limit, rate_limit, rate_limit_count, rate_limit_seconds,
    created_at_date_time, updated_at_date_time
) VALUES (
    :type_code, :name, :worker_uri, :cron_expression, :can_work_in_parallel, :default_importance,
    :schedule_limit, :schedule_limit_allowance, :is_enabled, :auto_complete_success,
    :auto_delete_interval_duration, :max_retries, :max_crashes, :timeout, :catch_up,
    :catch_up_window, :concurrency_limit, :rate_limit, :rate_limit_count, :rate_limit_seconds,
    :now, :now
)
ON CONFLICT (type_code) DO UPDATE SET
    name = excluded.name,
    worker_uri = excluded.worker_uri,
    cron_expression = excluded.cron_expression,
    can_work_in_parallel = excluded.can_work_in_parallel,
    default_importance = excluded.default_importance,
    schedule_limit = excluded.schedule_limit,
    schedule_limit_allowance = excluded.schedule_limit_allowance,
    auto_complete_success = excluded.auto_complete_success,
    auto_delete_interval_duration = excluded.auto_delete_interval_duration,
    max_retries = excluded.max_retries,
    max_crashes = excluded.max_crashes,
    timeout = excluded.timeout,
    catch_up = excluded.catch_up,
    catch_up_window = excluded.catch_up_window,
    concurrency_limit = excluded.concurrency_limit,
    rate_limit = excluded.rate_limit,
    rate_limit_count = excluded.rate_limit_count,
    rate_limit_seconds = excluded.rate_limit_seconds,
    updated_at_date_time = excluded.updated_at_date_time

-- name: type_list
SELECT * FROM kojo_job_type ORDER BY type_code

-- name: type_get
SELECT * FROM kojo_job_type WHERE type_code = :type_code

-- name: type_set_enabled
UPDATE kojo_job_type SET is_enabled = :flag, updated_at_date_time = :now
WHERE type_code = :type_code RETURNING type_code

-- name: type_set_paused
UPDATE kojo_job_type SET is_paused = :flag, updated_at_date_time = :now
WHERE type_code = :type_code RETURNING type_code

-- name: job_get
SELECT * FROM kojo_job WHERE kojo_job_id = :kojo_job_id

-- name: job_get_with_type
SELECT j.*, t.auto_delete_interval_duration, t.auto_complete_success, t.max_retries,
    t.max_crashes, t.timeout
FROM kojo_job j JOIN kojo_job_type t ON t.type_code = j.type_code
WHERE j.kojo_job_id = :kojo_job_id

-- fragment: runnable_buckets
-- The lanes that may run now (runnable_lanes, in each dialect's jobs.sql) and the
-- priorities present in each, found by a loose scan of kojo_job_runnable: the highest,
-- then the highest below it, and so on, each an index seek (docs/claiming.md). A lane's
-- rate_seconds is its type's rate limit period (0: none).
{{runnable_lanes}}, bucket (type_code, parallel, rate_seconds, priority) AS (
    SELECT l.type_code, l.parallel, l.rate_seconds, (
        SELECT max(j.priority) FROM kojo_job j
        WHERE j.type_code = l.type_code AND j.can_work_in_parallel = l.parallel
          AND j.next_state_request = 'working' AND j.assigned_state IN ('waiting', 'crashed')
    )
    FROM lane l
    UNION ALL
    SELECT b.type_code, b.parallel, b.rate_seconds, (
        SELECT max(j.priority) FROM kojo_job j
        WHERE j.type_code = b.type_code AND j.can_work_in_parallel = b.parallel
          AND j.priority < b.priority
          AND j.next_state_request = 'working' AND j.assigned_state IN ('waiting', 'crashed')
    )
    FROM bucket b WHERE b.priority IS NOT NULL
)

-- name: job_next_work_at
-- When the next job of a lane that may run becomes due: the walk of job_claim (every step
-- an index seek), so jobs that cannot run are never read here either. A rate-limited type
-- with jobs to run and no free slot adds the time its next slot frees.
WITH RECURSIVE {{runnable_buckets}}
SELECT min(work_at) AS work_at FROM (
    SELECT (
        SELECT min(k.work_at_date_time) FROM kojo_job k
        WHERE k.type_code = b.type_code AND k.can_work_in_parallel = b.parallel
          AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time > :now
    ) AS work_at
    FROM bucket b WHERE b.priority IS NOT NULL
    UNION ALL
    SELECT t.rate_free_date_time FROM kojo_job_type t
    WHERE t.rate_limit_count > 0 AND NOT t.is_paused AND t.rate_free_date_time > :now
      AND EXISTS (SELECT 1 FROM kojo_job j WHERE j.type_code = t.type_code
          AND j.next_state_request = 'working' AND j.assigned_state IN ('waiting', 'crashed'))
) AS due

-- name: process_register
INSERT INTO kojo_process (host_name, process_id, parent_process_id, path, kind,
    started_at_date_time, info)
VALUES (:host_name, :process_id, :parent_process_id, :path, :kind, :now, :info)
RETURNING kojo_process_id

-- name: process_list
SELECT * FROM kojo_process ORDER BY host_name, kojo_process_id

-- name: process_get
SELECT * FROM kojo_process WHERE kojo_process_id = :kojo_process_id

-- name: process_delete
DELETE FROM kojo_process WHERE kojo_process_id = :kojo_process_id

-- Owners that working jobs or held lock slots still name but that have no process row
-- (whatever removed it): the sweep probes and reaps them.

-- name: orphan_owners
SELECT kojo_process_id FROM kojo_job j
WHERE j.assigned_state = 'working' AND j.kojo_process_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM kojo_process p WHERE p.kojo_process_id = j.kojo_process_id)
UNION
SELECT kojo_process_id FROM kojo_semaphore_slot s
WHERE s.kojo_process_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM kojo_process p WHERE p.kojo_process_id = s.kojo_process_id)

-- name: process_working_jobs
SELECT j.kojo_job_id, j.type_code, j.assigned_state, j.next_state_request, j.previous_state,
    j.priority, j.times_worked, j.times_retried, j.times_held, j.times_crashed,
    j.times_panicked, j.kojo_process_id, j.can_work_in_parallel, j.last_transition_date_time,
    j.work_at_date_time, t.max_crashes,
    t.auto_delete_interval_duration, t.timeout
FROM kojo_job j JOIN kojo_job_type t ON t.type_code = j.type_code
WHERE j.kojo_process_id = :kojo_process_id AND j.assigned_state = 'working'

-- name: process_release_slots
UPDATE kojo_semaphore_slot SET kojo_process_id = NULL, kojo_job_id = NULL, token = NULL,
    acquired_at_date_time = NULL
WHERE kojo_process_id = :kojo_process_id

-- name: process_delete_waiters
DELETE FROM kojo_semaphore_waiter WHERE kojo_process_id = :kojo_process_id

-- name: process_find
SELECT kojo_process_id FROM kojo_process
WHERE host_name = :host_name AND process_id = :process_id

-- name: job_owner_process
SELECT p.kojo_process_id, p.host_name, p.process_id FROM kojo_job j
JOIN kojo_process p ON p.kojo_process_id = j.kojo_process_id
WHERE j.kojo_job_id = :kojo_job_id

-- name: job_claim_by_id
UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none',
    previous_state = assigned_state, times_worked = times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
WHERE kojo_job_id = :kojo_job_id AND next_state_request = 'working'
  AND assigned_state IN ('waiting', 'crashed')
RETURNING *

-- Rate limits (docs/rate-limits.md): a type's slots, one per start allowed per period.
-- Each holds the time from which it may be taken again; the type's rate_free_date_time
-- is the earliest. Both change only while the type's row is held (registration, claims).

-- name: rate_slot_trim
DELETE FROM kojo_rate_slot WHERE type_code = :type_code AND slot >= :count

-- name: rate_slot_fill
WITH RECURSIVE n (slot) AS (
    SELECT 0 WHERE CAST(:count AS integer) > 0
    UNION ALL
    SELECT slot + 1 FROM n WHERE slot + 1 < CAST(:count AS integer)
)
INSERT INTO kojo_rate_slot (type_code, slot, free_date_time)
SELECT :type_code, slot, :epoch FROM n WHERE true
ON CONFLICT (type_code, slot) DO NOTHING

-- name: rate_slot_take
-- :count starts: the slots free longest are taken until :free_at.
UPDATE kojo_rate_slot SET free_date_time = :free_at
WHERE type_code = :type_code AND slot IN (
    SELECT slot FROM kojo_rate_slot
    WHERE type_code = :type_code AND free_date_time <= :now
    ORDER BY free_date_time, slot LIMIT :count)
RETURNING slot

-- name: rate_free_count
SELECT count(*) AS free FROM (
    SELECT 1 FROM kojo_rate_slot
    WHERE type_code = :type_code AND free_date_time <= :now LIMIT :limit) AS f

-- name: rate_free_set
UPDATE kojo_job_type SET rate_free_date_time = coalesce(
    (SELECT min(free_date_time) FROM kojo_rate_slot WHERE type_code = :type_code), :epoch)
WHERE type_code = :type_code

-- name: rate_of_type
SELECT rate_limit, rate_limit_count, rate_limit_seconds, rate_free_date_time FROM kojo_job_type
WHERE type_code = :type_code

-- name: job_working_owners
-- Ordered by owner first: in the order of the kojo_job_owner index (the working jobs
-- only). Ordered by id alone, SQLite walked the whole table in id order instead.
SELECT kojo_process_id, kojo_job_id FROM kojo_job
WHERE assigned_state = 'working' AND kojo_process_id IS NOT NULL
ORDER BY kojo_process_id, kojo_job_id

-- Every working job with the process that claimed it (`kojo ctl ping`).

-- name: job_running
SELECT j.kojo_job_id, j.type_code, j.kojo_process_id, j.last_transition_date_time,
    j.times_worked, p.host_name, p.process_id, p.kind
FROM kojo_job j JOIN kojo_process p ON p.kojo_process_id = j.kojo_process_id
WHERE j.assigned_state = 'working'
ORDER BY p.host_name, j.kojo_job_id

-- fragment: unfinished_unique
unique_key IS NOT NULL AND assigned_state NOT IN (
    'complete_success', 'complete_failed', 'complete_failed_schedule_limit_check',
    'complete_terminated')

-- name: job_find_unique
SELECT kojo_job_id FROM kojo_job
WHERE type_code = :type_code AND unique_key = :unique_key AND {{unfinished_unique}}

-- name: job_set_progress
UPDATE kojo_job SET progress = :progress, progress_note = :note
WHERE kojo_job_id = :kojo_job_id AND kojo_process_id = :owner AND assigned_state = 'working'

-- name: job_await
UPDATE kojo_job SET awaited = true WHERE kojo_job_id = :kojo_job_id AND NOT awaited

-- name: job_dependency_delete
-- A parent finished: its edges go; the children they held are returned.
DELETE FROM kojo_job_dependency WHERE parent_id = :parent RETURNING child_id

-- name: job_child_release
-- A child whose last parent completed successfully becomes runnable (or, under a
-- concurrency limit, waits to be admitted).
UPDATE kojo_job SET last_transition_date_time = :now,
    next_state_request = CASE WHEN limited THEN 'limit' ELSE 'working' END
WHERE kojo_job_id = :child AND assigned_state = 'waiting' AND next_state_request = 'after'
  AND NOT EXISTS (SELECT 1 FROM kojo_job_dependency WHERE child_id = :child)
RETURNING limited, type_code, concurrency_key

-- name: job_parents_pending
SELECT parent_id FROM kojo_job_dependency WHERE child_id = :child ORDER BY parent_id

-- name: limit_queued
-- Whether any job of the type and key waits for a place (one seek of kojo_job_limit_queue).
SELECT 1 AS queued FROM kojo_job
WHERE type_code = :type_code AND concurrency_key = :concurrency_key
  AND next_state_request = 'limit' AND assigned_state = 'waiting'
LIMIT 1

-- name: limit_of_type
SELECT concurrency_limit FROM kojo_job_type WHERE type_code = :type_code

-- name: limit_admitted
-- The jobs of a type and key admitted now (working, or runnable: waiting or crashed with
-- the request working); read under limit_lock.
SELECT kojo_job_id FROM kojo_job
WHERE type_code = :type_code AND concurrency_key = :concurrency_key AND limited
  AND (assigned_state = 'working'
    OR (next_state_request = 'working' AND assigned_state IN ('waiting', 'crashed')))

-- name: limit_admit
-- Admit the first :free waiting jobs of the type and key, in selection order.
UPDATE kojo_job SET next_state_request = 'working', last_transition_date_time = :now
WHERE kojo_job_id IN (
    SELECT q.kojo_job_id FROM kojo_job q
    WHERE q.type_code = :type_code AND q.concurrency_key = :concurrency_key
      AND q.next_state_request = 'limit' AND q.assigned_state = 'waiting'
    ORDER BY q.priority DESC, q.work_at_date_time, q.kojo_job_id
    LIMIT :free
)

-- name: job_finish_flags
-- What a job's end sets off (job_store._job_finished).
SELECT kojo_job_id, awaited, has_children, limited, type_code, concurrency_key
FROM kojo_job WHERE kojo_job_id = :kojo_job_id

-- name: job_event_insert
-- One of a job's rare transitions, for its timeline (schema_5.sql says which are kept).
INSERT INTO kojo_job_event (kojo_job_id, at_date_time, transition, from_state, to_state,
    actor, kojo_process_id, note)
VALUES (:kojo_job_id, :at, :transition, :from_state, :to_state, :actor, :process, :note)

-- Running totals of finished jobs (kojo_job_tally, schema_6.sql; backends/tally_store.py).

-- fragment: tally_columns
    finished, timed, duration_sum, wait_sum, duration_5ms, duration_10ms, duration_25ms,
    duration_50ms, duration_100ms, duration_250ms, duration_500ms, duration_1s,
    duration_2_5s, duration_5s, duration_10s, duration_30s, duration_1m, duration_5m,
    duration_15m, duration_1h, wait_5ms, wait_10ms, wait_25ms, wait_50ms, wait_100ms,
    wait_250ms, wait_500ms, wait_1s, wait_2_5s, wait_5s, wait_10s, wait_30s, wait_1m,
    wait_5m, wait_15m, wait_1h

-- fragment: tally_values
    :finished, :timed, :duration_sum, :wait_sum, :duration_5ms, :duration_10ms,
    :duration_25ms, :duration_50ms, :duration_100ms, :duration_250ms, :duration_500ms,
    :duration_1s, :duration_2_5s, :duration_5s, :duration_10s, :duration_30s, :duration_1m,
    :duration_5m, :duration_15m, :duration_1h, :wait_5ms, :wait_10ms, :wait_25ms,
    :wait_50ms, :wait_100ms, :wait_250ms, :wait_500ms, :wait_1s, :wait_2_5s, :wait_5s,
    :wait_10s, :wait_30s, :wait_1m, :wait_5m, :wait_15m, :wait_1h

-- fragment: tally_sums
    sum(finished) AS finished, sum(timed) AS timed, sum(duration_sum) AS duration_sum,
    sum(wait_sum) AS wait_sum, sum(duration_5ms) AS duration_5ms,
    sum(duration_10ms) AS duration_10ms, sum(duration_25ms) AS duration_25ms,
    sum(duration_50ms) AS duration_50ms, sum(duration_100ms) AS duration_100ms,
    sum(duration_250ms) AS duration_250ms, sum(duration_500ms) AS duration_500ms,
    sum(duration_1s) AS duration_1s, sum(duration_2_5s) AS duration_2_5s,
    sum(duration_5s) AS duration_5s, sum(duration_10s) AS duration_10s,
    sum(duration_30s) AS duration_30s, sum(duration_1m) AS duration_1m,
    sum(duration_5m) AS duration_5m, sum(duration_15m) AS duration_15m,
    sum(duration_1h) AS duration_1h, sum(wait_5ms) AS wait_5ms,
    sum(wait_10ms) AS wait_10ms, sum(wait_25ms) AS wait_25ms, sum(wait_50ms) AS wait_50ms,
    sum(wait_100ms) AS wait_100ms, sum(wait_250ms) AS wait_250ms,
    sum(wait_500ms) AS wait_500ms, sum(wait_1s) AS wait_1s, sum(wait_2_5s) AS wait_2_5s,
    sum(wait_5s) AS wait_5s, sum(wait_10s) AS wait_10s, sum(wait_30s) AS wait_30s,
    sum(wait_1m) AS wait_1m, sum(wait_5m) AS wait_5m, sum(wait_15m) AS wait_15m,
    sum(wait_1h) AS wait_1h

-- fragment: tally_added
    finished = kojo_job_tally.finished + excluded.finished,
    timed = kojo_job_tally.timed + excluded.timed,
    duration_sum = kojo_job_tally.duration_sum + excluded.duration_sum,
    wait_sum = kojo_job_tally.wait_sum + excluded.wait_sum,
    duration_5ms = kojo_job_tally.duration_5ms + excluded.duration_5ms,
    duration_10ms = kojo_job_tally.duration_10ms + excluded.duration_10ms,
    duration_25ms = kojo_job_tally.duration_25ms + excluded.duration_25ms,
    duration_50ms = kojo_job_tally.duration_50ms + excluded.duration_50ms,
    duration_100ms = kojo_job_tally.duration_100ms + excluded.duration_100ms,
    duration_250ms = kojo_job_tally.duration_250ms + excluded.duration_250ms,
    duration_500ms = kojo_job_tally.duration_500ms + excluded.duration_500ms,
    duration_1s = kojo_job_tally.duration_1s + excluded.duration_1s,
    duration_2_5s = kojo_job_tally.duration_2_5s + excluded.duration_2_5s,
    duration_5s = kojo_job_tally.duration_5s + excluded.duration_5s,
    duration_10s = kojo_job_tally.duration_10s + excluded.duration_10s,
    duration_30s = kojo_job_tally.duration_30s + excluded.duration_30s,
    duration_1m = kojo_job_tally.duration_1m + excluded.duration_1m,
    duration_5m = kojo_job_tally.duration_5m + excluded.duration_5m,
    duration_15m = kojo_job_tally.duration_15m + excluded.duration_15m,
    duration_1h = kojo_job_tally.duration_1h + excluded.duration_1h,
    wait_5ms = kojo_job_tally.wait_5ms + excluded.wait_5ms,
    wait_10ms = kojo_job_tally.wait_10ms + excluded.wait_10ms,
    wait_25ms = kojo_job_tally.wait_25ms + excluded.wait_25ms,
    wait_50ms = kojo_job_tally.wait_50ms + excluded.wait_50ms,
    wait_100ms = kojo_job_tally.wait_100ms + excluded.wait_100ms,
    wait_250ms = kojo_job_tally.wait_250ms + excluded.wait_250ms,
    wait_500ms = kojo_job_tally.wait_500ms + excluded.wait_500ms,
    wait_1s = kojo_job_tally.wait_1s + excluded.wait_1s,
    wait_2_5s = kojo_job_tally.wait_2_5s + excluded.wait_2_5s,
    wait_5s = kojo_job_tally.wait_5s + excluded.wait_5s,
    wait_10s = kojo_job_tally.wait_10s + excluded.wait_10s,
    wait_30s = kojo_job_tally.wait_30s + excluded.wait_30s,
    wait_1m = kojo_job_tally.wait_1m + excluded.wait_1m,
    wait_5m = kojo_job_tally.wait_5m + excluded.wait_5m,
    wait_15m = kojo_job_tally.wait_15m + excluded.wait_15m,
    wait_1h = kojo_job_tally.wait_1h + excluded.wait_1h

-- name: tally_add
-- One group of finishes (a type and outcome, in one minute, by one process) added to the
-- process's own row: no other process writes it, so this never waits on a lock.
INSERT INTO kojo_job_tally (minute, type_code, outcome, writer,
{{tally_columns}}
) VALUES (:minute, :type_code, :outcome, :writer,
{{tally_values}}
)
ON CONFLICT (minute, type_code, outcome, writer) DO UPDATE SET
{{tally_added}}

-- name: tally_oldest
-- The oldest minute not folded yet (an index seek: the key starts with the minute).
SELECT min(minute) AS minute FROM kojo_job_tally WHERE minute > 0

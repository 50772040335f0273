-- MySQL's text of the job, job type, schema and process queries that differ by dialect.
-- sqlite/jobs.sql and postgres/jobs.sql define the same names (tests/unit/test_sql_names.py).
-- A query may be several statements, each ending with ";" at the end of a line: a later
-- one reads the first column of the last result as :_ids (MySQL has no UPDATE ...
-- RETURNING; backends/mysql.py). In a multi-table SET, MySQL assigns left to right and
-- reads the new values: previous_state is set before assigned_state.

-- fragment: skip_types
SELECT skipped FROM JSON_TABLE(:skip, '$[*]' COLUMNS (skipped varchar(255) PATH '$')) AS s

-- fragment: runnable_lanes
lane (type_code, parallel, rate_seconds) AS (
    SELECT t.type_code, p.parallel, t.rate_limit_seconds
    FROM kojo_job_type t, (SELECT 1 AS parallel UNION ALL SELECT 0) AS p
    WHERE NOT t.is_paused
      AND (t.rate_limit_count = 0 OR t.rate_free_date_time <= :now)
      AND t.type_code NOT IN ({{skip_types}})
      AND (p.parallel OR NOT EXISTS (
        SELECT 1 FROM kojo_job w WHERE w.type_code = t.type_code
          AND w.assigned_state = 'working' AND NOT w.can_work_in_parallel))
)

-- fragment: parallel_lane_due
-- Whether type t's parallel lane has a due job: its earliest job of each runnable state
-- is due. Each probe is the first entry of kojo_job_due for the lane and state, one
-- read. (With `work_at_date_time <= :now` in the probe, MariaDB read every job of the
-- lane, or materialized every due one.)
((SELECT k.work_at_date_time FROM kojo_job k FORCE INDEX (kojo_job_due)
        WHERE k.type_code = t.type_code AND k.can_work_in_parallel = true
          AND k.next_state_request = 'working' AND k.assigned_state = 'waiting'
        ORDER BY k.work_at_date_time LIMIT 1) <= :now
    OR (SELECT k.work_at_date_time FROM kojo_job k FORCE INDEX (kojo_job_due)
        WHERE k.type_code = t.type_code AND k.can_work_in_parallel = true
          AND k.next_state_request = 'working' AND k.assigned_state = 'crashed'
        ORDER BY k.work_at_date_time LIMIT 1) <= :now)

-- fragment: serial_lane_due
-- The same for type t's serial lane.
((SELECT k.work_at_date_time FROM kojo_job k FORCE INDEX (kojo_job_due)
        WHERE k.type_code = t.type_code AND k.can_work_in_parallel = false
          AND k.next_state_request = 'working' AND k.assigned_state = 'waiting'
        ORDER BY k.work_at_date_time LIMIT 1) <= :now
    OR (SELECT k.work_at_date_time FROM kojo_job k FORCE INDEX (kojo_job_due)
        WHERE k.type_code = t.type_code AND k.can_work_in_parallel = false
          AND k.next_state_request = 'working' AND k.assigned_state = 'crashed'
        ORDER BY k.work_at_date_time LIMIT 1) <= :now)

-- fragment: due_types
-- The types that may run now and have a due job in a lane that may run (job_claim's
-- first step; job_claim_contended), their rate limit's period, and whether their serial
-- lane may run (no serial job of theirs working).
SELECT t.type_code, t.rate_limit_seconds,
    (SELECT 1 FROM kojo_job w WHERE w.serial_working_type = t.type_code) IS NULL AS serial_free
FROM kojo_job_type t
WHERE NOT t.is_paused
  AND (t.rate_limit_count = 0 OR t.rate_free_date_time <= :now)
  AND t.type_code NOT IN ({{skip_types}})
  AND ({{parallel_lane_due}}
    OR ({{serial_lane_due}}
      AND (SELECT 1 FROM kojo_job w WHERE w.serial_working_type = t.type_code) IS NULL))

-- name: job_claim
-- Three steps, run by MysqlBackend.claim_rows with the lane walk between the first and the
-- second. First the rows of the types that may run now and have a due job in a lane that
-- may run, with SKIP LOCKED: concurrent claims split the types between them, so two never
-- pick one serial type, and a rate-limited type's slots are counted under its row (as on
-- PostgreSQL). Then (mysql_lanes.py) the serial and rate-limited lanes of those types,
-- and the parallel lanes of every type without a rate limit, held or not, their jobs
-- locked with SKIP LOCKED, are walked priority by priority, as PostgreSQL's claim does
-- (MySQL has no LATERAL): every step an index seek that reads no more rows than it takes,
-- so neither jobs that cannot run now nor a long due backlog behind the first `limit` are
-- read (tests/backends/test_claim_walk.py counts the rows read). The first step's probes
-- are parallel_lane_due and serial_lane_due. Then the compare-and-set claim of the chosen
-- ids (:_ids), and the claimed rows.
{{due_types}}
ORDER BY t.type_code
FOR UPDATE SKIP LOCKED;
UPDATE kojo_job SET previous_state = assigned_state, assigned_state = 'working',
    next_state_request = 'none', times_worked = times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
WHERE kojo_job_id IN :_ids
  AND next_state_request = 'working' AND assigned_state IN ('waiting', 'crashed');
SELECT k.*, t.rate_limit_seconds AS rate_seconds
FROM kojo_job k JOIN kojo_job_type t ON t.type_code = k.type_code
WHERE k.kojo_job_id IN :_ids AND k.assigned_state = 'working' AND k.kojo_process_id = :owner
  AND k.last_transition_date_time = :now
ORDER BY k.priority DESC, k.work_at_date_time, k.kojo_job_id

-- name: job_claim_type
-- Up to :n more due parallel jobs of one rate-limited type, whose row the claim holds.
SELECT kojo_job_id FROM kojo_job
WHERE type_code = :type_code AND can_work_in_parallel
  AND next_state_request = 'working' AND assigned_state IN ('waiting', 'crashed')
  AND work_at_date_time <= :now
ORDER BY priority DESC, work_at_date_time, kojo_job_id
LIMIT :n
FOR UPDATE SKIP LOCKED;
UPDATE kojo_job SET previous_state = assigned_state, assigned_state = 'working',
    next_state_request = 'none', times_worked = times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
WHERE kojo_job_id IN :_ids
  AND next_state_request = 'working' AND assigned_state IN ('waiting', 'crashed');
SELECT * FROM kojo_job
WHERE kojo_job_id IN :_ids AND assigned_state = 'working' AND kojo_process_id = :owner
  AND last_transition_date_time = :now

-- fragment: open_types
-- The types whose jobs may start now: not paused, a slot of their rate limit free, not in
-- :skip.
SELECT t.type_code FROM kojo_job_type t
WHERE NOT t.is_paused
  AND (t.rate_limit_count = 0 OR t.rate_free_date_time <= :now)
  AND t.type_code NOT IN ({{skip_types}})

-- name: job_due_count
-- Due jobs a job process could claim now (at most :limit), for growing a pool: the due
-- parallel jobs of types without a rate limit, and one for each other type with a due
-- job in a lane that may run. Each part is index seeks (kojo_job_due): jobs that cannot
-- run now are not read (MySQL's min/max over IN lists would read them: no bucket walk).
SELECT least(:limit, (
    SELECT count(*) FROM (
        SELECT 1 FROM kojo_job k
        WHERE k.type_code IN ({{open_types}} AND t.rate_limit_seconds = 0)
          AND k.can_work_in_parallel = true AND k.next_state_request = 'working'
          AND k.assigned_state IN ('waiting', 'crashed') AND k.work_at_date_time <= :now
        LIMIT :limit) AS parallel_due
    ) + (
    SELECT count(*) FROM kojo_job_type o
    WHERE o.type_code IN ({{open_types}})
      AND ((o.rate_limit_seconds > 0 AND (
            SELECT 1 FROM kojo_job k FORCE INDEX (kojo_job_due) WHERE k.type_code = o.type_code
              AND k.can_work_in_parallel = true AND k.next_state_request = 'working'
              AND k.assigned_state IN ('waiting', 'crashed') AND k.work_at_date_time <= :now
              LIMIT 1) IS NOT NULL)
        OR ((
            SELECT 1 FROM kojo_job k FORCE INDEX (kojo_job_due) WHERE k.type_code = o.type_code
              AND k.can_work_in_parallel = false AND k.next_state_request = 'working'
              AND k.assigned_state IN ('waiting', 'crashed') AND k.work_at_date_time <= :now
              LIMIT 1) IS NOT NULL
          AND (SELECT 1 FROM kojo_job w WHERE w.serial_working_type = o.type_code) IS NULL))
    )) AS due

-- name: job_insert_batch
INSERT INTO kojo_job (
    type_code, name, priority, importance, work_at_date_time, next_state_request,
    assigned_state, previous_state, worker_uri, can_work_in_parallel,
    last_transition_date_time, created_at_date_time, payload, concurrency_key, limited
)
SELECT t.type_code, t.name, coalesce(:importance, t.default_importance),
    coalesce(:importance, t.default_importance), :work_at,
    CASE WHEN :after THEN 'after' WHEN t.concurrency_limit > 0 THEN 'limit'
        WHEN t.schedule_limit > 0 THEN 'schedule_limit_check' ELSE 'working' END,
    'waiting', 'new', t.worker_uri, t.can_work_in_parallel, :now, :now, p.payload,
    :concurrency_key, t.concurrency_limit > 0
FROM kojo_job_type t,
    JSON_TABLE(:payloads, '$[*]' COLUMNS (n FOR ORDINALITY, payload longtext PATH '$')) AS p
WHERE t.type_code = :type_code AND t.is_enabled
ORDER BY p.n
RETURNING kojo_job_id, limited

-- A claim's first statement: its owner still registered, and its anchor's lock held. The
-- shared lock on the process row lasts until commit: reaping this owner
-- (owner_reap_guard) skips it meanwhile, and a reaping in flight is waited for.

-- name: jobs_get
-- Jobs by id (:ids, a list as _id_list gives it), e.g. a claim's uncommon rows, whole
-- (claimed_rows.py).
SELECT k.* FROM JSON_TABLE(:ids, '$[*]' COLUMNS (id bigint PATH '$')) AS i
JOIN kojo_job k ON k.kojo_job_id = i.id

-- name: owner_vouch
SELECT count(*) > 0 AND IS_USED_LOCK(:lock_name) IS NOT NULL AS vouched
FROM kojo_process WHERE kojo_process_id = :owner
LOCK IN SHARE MODE

-- name: job_complete_success
-- (MySQL assigns left to right: started_at takes the claim's time before it changes.)
-- The ids are a literal list (:id_list): primary key seeks. EXPLAIN showed `IN (SELECT ...
-- JSON_TABLE)` in an UPDATE as a dependent subquery over the primary key's index.
UPDATE kojo_job SET started_at_date_time = last_transition_date_time,
    previous_state = 'working', assigned_state = 'complete_success',
    next_state_request = 'none', last_transition_date_time = :now,
    completed_at_date_time = :now, delete_after_date_time = :delete_after
WHERE kojo_job_id IN :id_list
  AND assigned_state = 'working' AND kojo_process_id = :owner

-- name: job_insert_unique
-- One job with a unique key: nothing when an unfinished job of the type has the key
-- (kojo_job_unique); IGNORE turns that duplicate into no row.
INSERT IGNORE INTO kojo_job (
    type_code, name, priority, importance, work_at_date_time, next_state_request,
    assigned_state, previous_state, worker_uri, can_work_in_parallel,
    last_transition_date_time, created_at_date_time, payload, unique_key, concurrency_key,
    limited
)
SELECT t.type_code, t.name, coalesce(:importance, t.default_importance),
    coalesce(:importance, t.default_importance), :work_at,
    CASE WHEN :after THEN 'after' WHEN t.concurrency_limit > 0 THEN 'limit'
        WHEN t.schedule_limit > 0 THEN 'schedule_limit_check' ELSE 'working' END,
    'waiting', 'new', t.worker_uri, t.can_work_in_parallel, :now, :now, :payload, :unique_key,
    :concurrency_key, t.concurrency_limit > 0
FROM kojo_job_type t
WHERE t.type_code = :type_code AND t.is_enabled
RETURNING kojo_job_id, limited

-- name: job_set_result
UPDATE kojo_job SET result = :result
WHERE kojo_job_id = :kojo_job_id AND kojo_process_id = :owner

-- name: job_parents_lock
-- Lock the parents (before anything else of the child's transaction) and mark those that
-- will have children; their states as locked.
-- (Each parent by its key, in the sorted list's order: see type_rows_lock.)
SELECT k.kojo_job_id, k.assigned_state
FROM JSON_TABLE(:ids, '$[*]' COLUMNS (id bigint PATH '$')) AS i
STRAIGHT_JOIN kojo_job k ON k.kojo_job_id = i.id
ORDER BY k.kojo_job_id
FOR UPDATE;
UPDATE kojo_job SET has_children = true WHERE kojo_job_id IN :_ids;
SELECT kojo_job_id, assigned_state FROM kojo_job WHERE kojo_job_id IN :_ids
ORDER BY kojo_job_id

-- name: job_dependency_insert
INSERT INTO kojo_job_dependency (parent_id, child_id)
SELECT p.id, c.id
FROM JSON_TABLE(:parents, '$[*]' COLUMNS (id bigint PATH '$')) AS p,
    JSON_TABLE(:children, '$[*]' COLUMNS (id bigint PATH '$')) AS c

-- override: type_upsert
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
ON DUPLICATE KEY UPDATE
    name = VALUES(name),
    worker_uri = VALUES(worker_uri),
    cron_expression = VALUES(cron_expression),
    can_work_in_parallel = VALUES(can_work_in_parallel),
    default_importance = VALUES(default_importance),
    schedule_limit = VALUES(schedule_limit),
    schedule_limit_allowance = VALUES(schedule_limit_allowance),
    auto_complete_success = VALUES(auto_complete_success),
    auto_delete_interval_duration = VALUES(auto_delete_interval_duration),
    max_retries = VALUES(max_retries),
    max_crashes = VALUES(max_crashes),
    timeout = VALUES(timeout),
    catch_up = VALUES(catch_up),
    catch_up_window = VALUES(catch_up_window),
    concurrency_limit = VALUES(concurrency_limit),
    rate_limit = VALUES(rate_limit),
    rate_limit_count = VALUES(rate_limit_count),
    rate_limit_seconds = VALUES(rate_limit_seconds),
    updated_at_date_time = VALUES(updated_at_date_time)

-- override: type_set_enabled
UPDATE kojo_job_type SET is_enabled = :flag, updated_at_date_time = :now
WHERE type_code = :type_code;
SELECT type_code FROM kojo_job_type WHERE type_code = :type_code AND :_rowcount > 0

-- override: type_set_paused
UPDATE kojo_job_type SET is_paused = :flag, updated_at_date_time = :now
WHERE type_code = :type_code;
SELECT type_code FROM kojo_job_type WHERE type_code = :type_code AND :_rowcount > 0

-- override: job_claim_by_id
UPDATE kojo_job SET previous_state = assigned_state, assigned_state = 'working',
    next_state_request = 'none', times_worked = times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
WHERE kojo_job_id = :kojo_job_id AND next_state_request = 'working'
  AND assigned_state IN ('waiting', 'crashed');
SELECT * FROM kojo_job WHERE kojo_job_id = :kojo_job_id AND :_rowcount > 0

-- override: rate_slot_fill
INSERT IGNORE INTO kojo_rate_slot (type_code, slot, free_date_time)
WITH RECURSIVE n (slot) AS (
    SELECT 0 FROM DUAL WHERE :count > 0
    UNION ALL
    SELECT slot + 1 FROM n WHERE slot + 1 < :count
)
SELECT :type_code, slot, :epoch FROM n

-- override: rate_slot_take
SELECT slot FROM kojo_rate_slot
WHERE type_code = :type_code AND free_date_time <= :now
ORDER BY free_date_time, slot LIMIT :count
FOR UPDATE;
UPDATE kojo_rate_slot SET free_date_time = :free_at
WHERE type_code = :type_code AND slot IN :_ids;
SELECT slot FROM kojo_rate_slot WHERE type_code = :type_code AND slot IN :_ids

-- override: job_child_release
UPDATE kojo_job SET last_transition_date_time = :now,
    next_state_request = CASE WHEN limited THEN 'limit' ELSE 'working' END
WHERE kojo_job_id = :child AND assigned_state = 'waiting' AND next_state_request = 'after'
  AND NOT EXISTS (SELECT 1 FROM kojo_job_dependency WHERE child_id = :child);
SELECT limited, type_code, concurrency_key FROM kojo_job
WHERE kojo_job_id = :child AND :_rowcount > 0

-- override: limit_admit
UPDATE kojo_job SET next_state_request = 'working', last_transition_date_time = :now
WHERE type_code = :type_code AND concurrency_key = :concurrency_key
  AND next_state_request = 'limit' AND assigned_state = 'waiting'
ORDER BY priority DESC, work_at_date_time, kojo_job_id
LIMIT :free

-- fragment: payload_has
-- The job's payload JSON text contains :q (case-sensitive: utf8mb4_bin), or :q_ascii, the
-- same text with non-ASCII characters as \u escapes (json_text.py writes them so; NULL
-- when that is :q itself).
(INSTR(payload, :q) > 0 OR INSTR(payload, :q_ascii) > 0)

-- fragment: tally_added_here
-- tally_added with MySQL's words: ON DUPLICATE KEY UPDATE adds the row it would insert.
    finished = finished + VALUES(finished),
    timed = timed + VALUES(timed),
    duration_sum = duration_sum + VALUES(duration_sum),
    wait_sum = wait_sum + VALUES(wait_sum),
    duration_5ms = duration_5ms + VALUES(duration_5ms),
    duration_10ms = duration_10ms + VALUES(duration_10ms),
    duration_25ms = duration_25ms + VALUES(duration_25ms),
    duration_50ms = duration_50ms + VALUES(duration_50ms),
    duration_100ms = duration_100ms + VALUES(duration_100ms),
    duration_250ms = duration_250ms + VALUES(duration_250ms),
    duration_500ms = duration_500ms + VALUES(duration_500ms),
    duration_1s = duration_1s + VALUES(duration_1s),
    duration_2_5s = duration_2_5s + VALUES(duration_2_5s),
    duration_5s = duration_5s + VALUES(duration_5s),
    duration_10s = duration_10s + VALUES(duration_10s),
    duration_30s = duration_30s + VALUES(duration_30s),
    duration_1m = duration_1m + VALUES(duration_1m),
    duration_5m = duration_5m + VALUES(duration_5m),
    duration_15m = duration_15m + VALUES(duration_15m),
    duration_1h = duration_1h + VALUES(duration_1h),
    wait_5ms = wait_5ms + VALUES(wait_5ms),
    wait_10ms = wait_10ms + VALUES(wait_10ms),
    wait_25ms = wait_25ms + VALUES(wait_25ms),
    wait_50ms = wait_50ms + VALUES(wait_50ms),
    wait_100ms = wait_100ms + VALUES(wait_100ms),
    wait_250ms = wait_250ms + VALUES(wait_250ms),
    wait_500ms = wait_500ms + VALUES(wait_500ms),
    wait_1s = wait_1s + VALUES(wait_1s),
    wait_2_5s = wait_2_5s + VALUES(wait_2_5s),
    wait_5s = wait_5s + VALUES(wait_5s),
    wait_10s = wait_10s + VALUES(wait_10s),
    wait_30s = wait_30s + VALUES(wait_30s),
    wait_1m = wait_1m + VALUES(wait_1m),
    wait_5m = wait_5m + VALUES(wait_5m),
    wait_15m = wait_15m + VALUES(wait_15m),
    wait_1h = wait_1h + VALUES(wait_1h)

-- override: tally_add
-- (See sql/jobs.sql.)
INSERT INTO kojo_job_tally (minute, type_code, outcome, writer,
{{tally_columns}}
) VALUES (:minute, :type_code, :outcome, :writer,
{{tally_values}}
)
ON DUPLICATE KEY UPDATE
{{tally_added_here}}

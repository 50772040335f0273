-- SQLite's text of the job, job type, schema and process queries that differ by dialect.
-- postgres/jobs.sql defines the same names (tests/unit/test_sql_names.py checks it).
-- Every write runs inside BEGIN IMMEDIATE, so no row locks are needed.

-- fragment: runnable_lanes
-- The lanes that may run now (job_claim, docs/claiming.md): a lane is one type's parallel
-- jobs or its serial ones; none while the type is paused, every slot of its rate limit is
-- taken, or it is in :skip (a JSON array of the types whose workers the claiming process
-- cannot import), and no serial one while a job of its type is working.
lane (type_code, parallel, rate_seconds) AS (
    SELECT t.type_code, p.parallel, t.rate_limit_seconds
    FROM kojo_job_type t, (SELECT 1 AS parallel UNION ALL SELECT 0) AS p
    WHERE NOT t.is_paused
      AND (t.rate_limit_count = 0 OR t.rate_free_date_time <= :now)
      AND t.type_code NOT IN (SELECT value FROM json_each(:skip))
      AND (p.parallel OR NOT EXISTS (
        SELECT 1 FROM kojo_job w WHERE w.type_code = t.type_code
          AND w.assigned_state = 'working' AND w.can_work_in_parallel = 0))
)

-- name: job_claim
-- The lane and bucket walk of postgres/jobs.sql (see there and docs/claiming.md): its
-- cost does not grow with jobs that cannot run now. SQLite has no LATERAL, so each
-- bucket's due jobs come from a correlated IN (... LIMIT) over kojo_job_runnable. A
-- serial or rate-limited type gives one job; job_store then takes one of its rate limit's
-- slots and claims more of the type up to its free slots (job_claim_type; writes are
-- serial: nothing races it). Which rows are rated it asks once per claim
-- (job_rate_periods): RETURNING cannot read the FROM here, and a subquery per row cost 1%
-- of a job's instructions.
WITH RECURSIVE {{runnable_buckets}}, due AS (
    -- Up to :limit due jobs of each parallel bucket, one of each serial or rated bucket.
    SELECT c.kojo_job_id, c.type_code, c.can_work_in_parallel, c.priority, c.work_at_date_time,
        b.rate_seconds
    FROM bucket b JOIN kojo_job c ON c.kojo_job_id IN (
        SELECT k.kojo_job_id FROM kojo_job k
        WHERE k.type_code = b.type_code AND k.can_work_in_parallel = 1
          AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time <= :now
        ORDER BY k.work_at_date_time, k.kojo_job_id
        LIMIT :limit)
    WHERE b.parallel AND b.rate_seconds = 0 AND b.priority IS NOT NULL
    UNION ALL
    SELECT c.kojo_job_id, c.type_code, c.can_work_in_parallel, c.priority, c.work_at_date_time,
        b.rate_seconds
    FROM bucket b JOIN kojo_job c ON c.kojo_job_id IN (
        SELECT k.kojo_job_id FROM kojo_job k
        WHERE k.type_code = b.type_code AND k.can_work_in_parallel = b.parallel
          AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time <= :now
        ORDER BY k.work_at_date_time, k.kojo_job_id
        LIMIT 1)
    WHERE (NOT b.parallel OR b.rate_seconds > 0) AND b.priority IS NOT NULL
), candidate AS (
    SELECT * FROM due
    -- A reaped owner claims nothing (backend.job_claim then asks why, and stops).
    WHERE EXISTS (SELECT 1 FROM kojo_process o WHERE o.kojo_process_id = :owner)
    ORDER BY priority DESC, work_at_date_time, kojo_job_id
    LIMIT :limit
), chosen AS (
    -- A serial or rated type gives one job per priority above; only its first may run.
    SELECT kojo_job_id, can_work_in_parallel AND rate_seconds = 0 AS many, row_number() OVER (
        PARTITION BY type_code ORDER BY priority DESC, work_at_date_time, kojo_job_id) AS rank
    FROM candidate
)
UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none',
    previous_state = assigned_state, times_worked = times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
FROM chosen
WHERE kojo_job.kojo_job_id = chosen.kojo_job_id AND (chosen.many OR chosen.rank = 1)
-- Not RETURNING *: fetching a column costs a job more than the claim's SQL does per
-- column. The columns the UPDATE sets come from its parameters, and those a plain job
-- leaves at their defaults are one flag, `uncommon`: sqlite.py (claim_rows) fills them
-- in, and reads the rows that have other values again, whole.
RETURNING kojo_job_id, type_code, name, priority, importance, work_at_date_time,
    previous_state, worker_uri, can_work_in_parallel, times_worked, times_retried,
    times_held, times_crashed, times_panicked, created_at_date_time, payload,
    coalesce(completed_at_date_time, delete_after_date_time, cron_fire_date_time,
        last_error, unique_key, result, progress, progress_note, started_at_date_time)
        IS NOT NULL OR awaited OR has_children OR limited OR concurrency_key <> ''
        AS uncommon

-- name: job_claim_type
-- Up to :n more due parallel jobs of one rate-limited type (see postgres/jobs.sql).
WITH RECURSIVE bucket (priority) AS (
    SELECT (
        SELECT max(j.priority) FROM kojo_job j
        WHERE j.type_code = :type_code AND j.can_work_in_parallel = 1
          AND j.next_state_request = 'working' AND j.assigned_state IN ('waiting', 'crashed')
    )
    UNION ALL
    SELECT (
        SELECT max(j.priority) FROM kojo_job j
        WHERE j.type_code = :type_code AND j.can_work_in_parallel = 1
          AND j.priority < b.priority
          AND j.next_state_request = 'working' AND j.assigned_state IN ('waiting', 'crashed')
    )
    FROM bucket b WHERE b.priority IS NOT NULL
), candidate AS (
    SELECT c.kojo_job_id FROM bucket b JOIN kojo_job c ON c.kojo_job_id IN (
        SELECT k.kojo_job_id FROM kojo_job k
        WHERE k.type_code = :type_code AND k.can_work_in_parallel = 1
          AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time <= :now
        ORDER BY k.work_at_date_time, k.kojo_job_id
        LIMIT :n)
    WHERE b.priority IS NOT NULL
    ORDER BY c.priority DESC, c.work_at_date_time, c.kojo_job_id
    LIMIT :n
)
UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none',
    previous_state = assigned_state, times_worked = times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
WHERE kojo_job_id IN (SELECT kojo_job_id FROM candidate)
RETURNING *

-- name: job_due_count
-- Due jobs a job process could claim now (at most :limit), for growing a pool: the lanes
-- and buckets of job_claim, without locking. A serial or rate-limited type counts once.
WITH RECURSIVE {{runnable_buckets}}, due AS (
    SELECT b.type_code, 1 AS many FROM bucket b JOIN kojo_job c ON c.kojo_job_id IN (
        SELECT k.kojo_job_id FROM kojo_job k
        WHERE k.type_code = b.type_code AND k.can_work_in_parallel = 1
          AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time <= :now
        ORDER BY k.work_at_date_time, k.kojo_job_id
        LIMIT :limit)
    WHERE b.parallel AND b.rate_seconds = 0 AND b.priority IS NOT NULL
    UNION ALL
    SELECT b.type_code, 0 AS many FROM bucket b JOIN kojo_job c ON c.kojo_job_id IN (
        SELECT k.kojo_job_id FROM kojo_job k
        WHERE k.type_code = b.type_code AND k.can_work_in_parallel = b.parallel
          AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time <= :now
        ORDER BY k.work_at_date_time, k.kojo_job_id
        LIMIT 1)
    WHERE (NOT b.parallel OR b.rate_seconds > 0) AND b.priority IS NOT NULL
)
SELECT min(:limit, (SELECT count(*) FROM due WHERE many)
    + (SELECT count(DISTINCT type_code) FROM due WHERE NOT many)) AS due

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
    'waiting', 'new', t.worker_uri, t.can_work_in_parallel, :now, :now, p.value,
    :concurrency_key, t.concurrency_limit > 0
FROM kojo_job_type t, json_each(:payloads) AS p
WHERE t.type_code = :type_code AND t.is_enabled
ORDER BY p.key
RETURNING kojo_job_id, limited

-- First statement of a claim's transaction: is this owner still registered? (A reaped
-- owner's row is gone, and its claims must not go on.) PostgreSQL also asks its anchor.

-- name: jobs_get
-- Jobs by id (:ids, a list as _id_list gives it), e.g. a claim's uncommon rows, whole
-- (claimed_rows.py).
SELECT * FROM kojo_job WHERE kojo_job_id IN (SELECT value FROM json_each(:ids))

-- name: owner_vouch
SELECT count(*) AS vouched FROM kojo_process WHERE kojo_process_id = :owner

-- fragment: complete_success
-- :ids is a JSON array of job ids; jobs no longer claimed by :owner are left alone.
UPDATE kojo_job SET assigned_state = 'complete_success', next_state_request = 'none',
    previous_state = 'working', last_transition_date_time = :now,
    started_at_date_time = last_transition_date_time,
    completed_at_date_time = :now, delete_after_date_time = :delete_after
WHERE kojo_job_id IN (SELECT value FROM json_each(:ids))
  AND assigned_state = 'working' AND kojo_process_id = :owner

-- name: job_complete_success
-- The jobs whose end sets nothing off (the usual case: no RETURNING row per job, which
-- costs more in Python than the statement); job_complete_flagged then completes the rest.
{{complete_success}}
  AND NOT (awaited OR has_children OR limited)

-- name: job_insert_unique
-- One job with a unique key: nothing when an unfinished job of the type has the key
-- (kojo_job_unique). (The SELECT's WHERE tells SQLite's parser where ON CONFLICT starts.)
INSERT INTO kojo_job (
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
ON CONFLICT (type_code, unique_key) WHERE {{unfinished_unique}} DO NOTHING
RETURNING kojo_job_id, limited

-- name: job_set_result
-- A finished job's return value (JSON text), written by the process that worked it.
UPDATE kojo_job SET result = :result
WHERE kojo_job_id = :kojo_job_id AND kojo_process_id = :owner

-- name: job_parents_lock
-- Inside the child's transaction (writes are serial here): mark the parents that will
-- have children.
UPDATE kojo_job SET has_children = 1
WHERE kojo_job_id IN (SELECT value FROM json_each(:ids))
RETURNING kojo_job_id, assigned_state

-- name: job_dependency_insert
INSERT INTO kojo_job_dependency (parent_id, child_id)
SELECT p.value, c.value FROM json_each(:parents) AS p, json_each(:children) AS c

-- fragment: payload_has
-- The job's payload JSON text contains :q (case-sensitive), or :q_ascii, the same text
-- as kojo writes it here (json_text.py: non-ASCII characters as \u escapes; NULL when
-- that is :q itself).
(instr(payload, :q) > 0 OR instr(payload, :q_ascii) > 0)

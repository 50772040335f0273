-- PostgreSQL's text of the job, job type, schema and process queries that differ by dialect.
-- sqlite/jobs.sql defines the same names (tests/unit/test_sql_names.py checks it).

-- fragment: runnable_lanes
-- The lanes that may run now (job_claim, docs/claiming.md): a lane is one type's parallel
-- jobs or its serial ones; none while the type is paused, every slot of its rate limit is
-- taken, or it is in :skip (a JSON array of the types whose workers the claiming process
-- cannot import), and no serial one while a job of its type is working.
lane AS (
    SELECT t.type_code, p.parallel, t.rate_limit_seconds AS rate_seconds
    FROM kojo_job_type t CROSS JOIN (VALUES (true), (false)) AS p (parallel)
    WHERE NOT t.is_paused
      AND (t.rate_limit_count = 0 OR t.rate_free_date_time <= :now)
      AND t.type_code NOT IN (SELECT jsonb_array_elements_text(CAST(:skip AS jsonb)))
      -- A scalar subquery, not NOT EXISTS: that was hashed, and a plan kept from an
      -- empty table (CLAIM_PLAN_SETTINGS) read every working job through kojo_job_owner
      -- instead of seeking kojo_job_serial_working by type.
      AND (p.parallel OR (
        SELECT count(*) FROM (
          SELECT 1 FROM kojo_job w WHERE w.type_code = t.type_code
            AND w.assigned_state = 'working' AND NOT w.can_work_in_parallel LIMIT 1) AS busy
      ) = 0)
)

-- name: job_claim
-- Walks the runnable jobs lane by lane (a lane: one type's parallel jobs, or its serial
-- ones) and, in a lane, priority by priority: kojo_job_runnable orders each lane by
-- (priority, time, id), so every step is an index seek, and a job that cannot run now
-- (dated later, of a paused type, serial behind a working job, rate-limited with every
-- slot taken) is never read: the cost does not grow with them (docs/claiming.md).
--   lane:      every lane that may run now;
--   bucket:    the priorities present in each lane, found by a loose index scan;
--   one_type:  the serial and rate-limited types among them, whose rows are held until
--              commit: each gives at most one job here (job_store claims more of a
--              rate-limited type, up to its free slots, with job_claim_type);
--   candidate: up to :limit due jobs per other bucket and one per type of one_type, taken
--              with SKIP LOCKED, then the first :limit in selection order.
-- Never waits, so it can never be part of a deadlock: type rows are taken with SKIP
-- LOCKED too. Whoever moves a job of a serial type into or out of `working` holds that
-- row (job_type_lock), so a claim never picks a serial type whose working job is being
-- changed, and its insert into kojo_job_serial_working never waits on another
-- transaction. A rate-limited type's slots change only under that row too; its free time
-- is read from the row as locked (a row changed since this statement began is read
-- again), so a claim never takes a slot another claim has just taken. The returned
-- rate_seconds (> 0) tells job_store to take one. Rows locked here but not chosen stay
-- locked until commit: harmless, as nothing here waits afterwards.
WITH RECURSIVE {{runnable_buckets}}, one_type AS (
    SELECT type_code, rate_limit_seconds AS rate_seconds FROM kojo_job_type
    WHERE type_code IN (SELECT type_code FROM bucket
                        WHERE (NOT parallel OR rate_seconds > 0) AND priority IS NOT NULL)
      AND (rate_limit_count = 0 OR rate_free_date_time <= :now)
    FOR NO KEY UPDATE SKIP LOCKED
), candidate AS (
    (SELECT c.kojo_job_id, c.priority, c.work_at_date_time, b.rate_seconds
    FROM bucket b CROSS JOIN LATERAL (
        SELECT k.kojo_job_id, k.priority, k.work_at_date_time FROM kojo_job k
        WHERE k.type_code = b.type_code AND k.can_work_in_parallel AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time <= :now
        ORDER BY k.work_at_date_time, k.kojo_job_id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE b.parallel AND b.rate_seconds = 0 AND b.priority IS NOT NULL)
    UNION ALL
    (SELECT DISTINCT ON (b.type_code) c.kojo_job_id, c.priority, c.work_at_date_time,
        s.rate_seconds
    FROM bucket b JOIN one_type s ON s.type_code = b.type_code CROSS JOIN LATERAL (
        SELECT k.kojo_job_id, k.priority, k.work_at_date_time FROM kojo_job k
        WHERE k.type_code = b.type_code AND k.can_work_in_parallel = b.parallel
          AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time <= :now
        ORDER BY k.work_at_date_time, k.kojo_job_id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE (NOT b.parallel OR b.rate_seconds > 0) AND b.priority IS NOT NULL
    ORDER BY b.type_code, c.priority DESC, c.work_at_date_time, c.kojo_job_id)
    ORDER BY priority DESC, work_at_date_time, kojo_job_id
    LIMIT :limit
)
UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none',
    previous_state = kojo_job.assigned_state, times_worked = kojo_job.times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
FROM candidate
WHERE kojo_job.kojo_job_id = candidate.kojo_job_id
-- Not kojo_job.*: the columns the UPDATE sets and those a plain job leaves at their
-- defaults come from claimed_rows.py (`uncommon` says when a row must be read again).
RETURNING kojo_job.kojo_job_id, kojo_job.type_code, kojo_job.name, kojo_job.priority,
    kojo_job.importance, kojo_job.work_at_date_time, kojo_job.previous_state,
    kojo_job.worker_uri, kojo_job.can_work_in_parallel, kojo_job.times_worked,
    kojo_job.times_retried, kojo_job.times_held, kojo_job.times_crashed,
    kojo_job.times_panicked, kojo_job.created_at_date_time, kojo_job.payload,
    candidate.rate_seconds,
    coalesce(kojo_job.completed_at_date_time, kojo_job.delete_after_date_time,
        kojo_job.cron_fire_date_time, kojo_job.started_at_date_time) IS NOT NULL
        OR coalesce(kojo_job.last_error, kojo_job.unique_key, kojo_job.progress_note)
            IS NOT NULL
        OR kojo_job.result IS NOT NULL OR kojo_job.progress IS NOT NULL
        OR kojo_job.awaited OR kojo_job.has_children OR kojo_job.limited
        OR kojo_job.concurrency_key <> '' AS uncommon

-- name: jobs_get
-- Jobs by id (:ids, a list as _id_list gives it), e.g. a claim's uncommon rows, whole
-- (claimed_rows.py).
SELECT * FROM kojo_job WHERE kojo_job_id = ANY(CAST(:ids AS bigint[]))

-- name: owner_vouch
SELECT EXISTS (SELECT 1 FROM kojo_process WHERE kojo_process_id = :owner)
    AND NOT pg_try_advisory_xact_lock(:namespace, CAST(:owner AS integer)) AS vouched

-- name: job_claim_type
-- Up to :n more due parallel jobs of one rate-limited type, for a claim that holds the
-- type's row and has counted :n free slots (job_store.job_claim): the lane walk of
-- job_claim for that type alone.
WITH RECURSIVE bucket (priority) AS (
    SELECT (
        SELECT max(j.priority) FROM kojo_job j
        WHERE j.type_code = :type_code AND j.can_work_in_parallel = true
          AND j.next_state_request = 'working' AND j.assigned_state IN ('waiting', 'crashed')
    )
    UNION ALL
    SELECT (
        SELECT max(j.priority) FROM kojo_job j
        WHERE j.type_code = :type_code AND j.can_work_in_parallel = true
          AND j.priority < b.priority
          AND j.next_state_request = 'working' AND j.assigned_state IN ('waiting', 'crashed')
    )
    FROM bucket b WHERE b.priority IS NOT NULL
), candidate AS (
    SELECT c.kojo_job_id, c.priority, c.work_at_date_time
    FROM bucket b CROSS JOIN LATERAL (
        SELECT k.kojo_job_id, k.priority, k.work_at_date_time FROM kojo_job k
        WHERE k.type_code = :type_code AND k.can_work_in_parallel AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time <= :now
        ORDER BY k.work_at_date_time, k.kojo_job_id
        LIMIT :n
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE b.priority IS NOT NULL
    ORDER BY c.priority DESC, c.work_at_date_time, c.kojo_job_id
    LIMIT :n
)
UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none',
    previous_state = kojo_job.assigned_state, times_worked = kojo_job.times_worked + 1,
    last_transition_date_time = :now, kojo_process_id = :owner
FROM candidate
WHERE kojo_job.kojo_job_id = candidate.kojo_job_id
RETURNING kojo_job.*

-- name: job_due_count
-- Due jobs a job process could claim now (at most :limit), for growing a pool: the lanes
-- and buckets of job_claim, without locking. A serial or rate-limited type counts once.
WITH RECURSIVE {{runnable_buckets}}, due AS (
    SELECT b.type_code, b.parallel AND b.rate_seconds = 0 AS many FROM bucket b
    CROSS JOIN LATERAL (
        SELECT 1 FROM kojo_job k
        WHERE k.type_code = b.type_code AND k.can_work_in_parallel = b.parallel
          AND k.priority = b.priority
          AND k.next_state_request = 'working' AND k.assigned_state IN ('waiting', 'crashed')
          AND k.work_at_date_time <= :now
        ORDER BY k.work_at_date_time, k.kojo_job_id
        LIMIT CASE WHEN b.parallel AND b.rate_seconds = 0 THEN :limit ELSE 1 END
    ) AS c
    WHERE b.priority IS NOT NULL
)
SELECT least(CAST(:limit AS bigint), (SELECT count(*) FROM due WHERE many)
    + (SELECT count(DISTINCT type_code) FROM due WHERE NOT many)) AS due

-- name: job_insert_batch
INSERT INTO kojo_job (
    type_code, name, priority, importance, work_at_date_time, next_state_request,
    assigned_state, previous_state, worker_uri, can_work_in_parallel,
    last_transition_date_time, created_at_date_time, payload, concurrency_key, limited
)
SELECT t.type_code, t.name, coalesce(CAST(:importance AS integer), t.default_importance),
    coalesce(CAST(:importance AS integer), t.default_importance), :work_at,
    CASE WHEN CAST(:after AS boolean) THEN 'after' WHEN t.concurrency_limit > 0 THEN 'limit'
        WHEN t.schedule_limit > 0 THEN 'schedule_limit_check' ELSE 'working' END,
    'waiting', 'new', t.worker_uri, t.can_work_in_parallel, :now, :now, CAST(p.payload AS jsonb),
    :concurrency_key, t.concurrency_limit > 0
FROM kojo_job_type t,
    jsonb_array_elements_text(CAST(:payloads AS jsonb)) WITH ORDINALITY AS p(payload, n)
WHERE t.type_code = :type_code AND t.is_enabled
ORDER BY p.n
RETURNING kojo_job_id, limited

-- name: job_complete_success
-- One row: how many were completed, and the ids of those whose end sets something off
-- (job_store._job_finished), NULL when none (the usual case). The jobs completed are added
-- to the tally (tally_store.py) by the same statement (completion_tallies): one round trip,
-- and no 40 parameters to send, for the sums tally_store.Group computes on the other
-- dialects. A duration is :now - the claim, a wait the claim - work_at, never below 0; a
-- bucket holds the values above the previous bound up to its own. In double precision
-- (date_part, not extract's numeric): 32 comparisons per job cost a third less so.
WITH done AS (
    UPDATE kojo_job SET assigned_state = 'complete_success', next_state_request = 'none',
        previous_state = 'working', last_transition_date_time = :now,
        started_at_date_time = last_transition_date_time,
        completed_at_date_time = :now, delete_after_date_time = :delete_after
    WHERE kojo_job_id = ANY(CAST(:ids AS bigint[]))
      AND assigned_state = 'working' AND kojo_process_id = :owner
    RETURNING kojo_job_id, type_code, awaited OR has_children OR limited AS sets_off,
        greatest(0, date_part('epoch', CAST(:now AS timestamptz) - started_at_date_time)) AS d,
        greatest(0, date_part('epoch', started_at_date_time - work_at_date_time)) AS w
), tallied AS (
    INSERT INTO kojo_job_tally (minute, type_code, outcome, writer,
    {{tally_columns}}
    )
    SELECT :minute, type_code, 'complete_success', :writer, count(*), count(*), sum(d), sum(w),
        count(*) FILTER (WHERE d <= 0.005), count(*) FILTER (WHERE d > 0.005 AND d <= 0.01),
        count(*) FILTER (WHERE d > 0.01 AND d <= 0.025),
        count(*) FILTER (WHERE d > 0.025 AND d <= 0.05),
        count(*) FILTER (WHERE d > 0.05 AND d <= 0.1),
        count(*) FILTER (WHERE d > 0.1 AND d <= 0.25),
        count(*) FILTER (WHERE d > 0.25 AND d <= 0.5),
        count(*) FILTER (WHERE d > 0.5 AND d <= 1), count(*) FILTER (WHERE d > 1 AND d <= 2.5),
        count(*) FILTER (WHERE d > 2.5 AND d <= 5), count(*) FILTER (WHERE d > 5 AND d <= 10),
        count(*) FILTER (WHERE d > 10 AND d <= 30), count(*) FILTER (WHERE d > 30 AND d <= 60),
        count(*) FILTER (WHERE d > 60 AND d <= 300),
        count(*) FILTER (WHERE d > 300 AND d <= 900),
        count(*) FILTER (WHERE d > 900 AND d <= 3600), count(*) FILTER (WHERE w <= 0.005),
        count(*) FILTER (WHERE w > 0.005 AND w <= 0.01),
        count(*) FILTER (WHERE w > 0.01 AND w <= 0.025),
        count(*) FILTER (WHERE w > 0.025 AND w <= 0.05),
        count(*) FILTER (WHERE w > 0.05 AND w <= 0.1),
        count(*) FILTER (WHERE w > 0.1 AND w <= 0.25),
        count(*) FILTER (WHERE w > 0.25 AND w <= 0.5),
        count(*) FILTER (WHERE w > 0.5 AND w <= 1), count(*) FILTER (WHERE w > 1 AND w <= 2.5),
        count(*) FILTER (WHERE w > 2.5 AND w <= 5), count(*) FILTER (WHERE w > 5 AND w <= 10),
        count(*) FILTER (WHERE w > 10 AND w <= 30), count(*) FILTER (WHERE w > 30 AND w <= 60),
        count(*) FILTER (WHERE w > 60 AND w <= 300),
        count(*) FILTER (WHERE w > 300 AND w <= 900),
        count(*) FILTER (WHERE w > 900 AND w <= 3600)
    FROM done GROUP BY type_code
    ON CONFLICT (minute, type_code, outcome, writer) DO UPDATE SET
    {{tally_added}}
)
SELECT count(*) AS completed, array_agg(kojo_job_id) FILTER (WHERE sets_off) AS flagged
FROM done

-- name: job_insert_unique
-- One job with a unique key: nothing when an unfinished job of the type has the key
-- (kojo_job_unique), however many sessions try at once.
INSERT INTO kojo_job (
    type_code, name, priority, importance, work_at_date_time, next_state_request,
    assigned_state, previous_state, worker_uri, can_work_in_parallel,
    last_transition_date_time, created_at_date_time, payload, unique_key, concurrency_key,
    limited
)
SELECT t.type_code, t.name, coalesce(CAST(:importance AS integer), t.default_importance),
    coalesce(CAST(:importance AS integer), t.default_importance), :work_at,
    CASE WHEN CAST(:after AS boolean) THEN 'after' WHEN t.concurrency_limit > 0 THEN 'limit'
        WHEN t.schedule_limit > 0 THEN 'schedule_limit_check' ELSE 'working' END,
    'waiting', 'new', t.worker_uri, t.can_work_in_parallel, :now, :now,
    CAST(:payload AS jsonb), :unique_key, :concurrency_key, t.concurrency_limit > 0
FROM kojo_job_type t
WHERE t.type_code = :type_code AND t.is_enabled
ON CONFLICT (type_code, unique_key) WHERE {{unfinished_unique}} DO NOTHING
RETURNING kojo_job_id, limited

-- name: job_set_result
-- A finished job's return value (JSON text), written by the process that worked it.
UPDATE kojo_job SET result = CAST(:result AS jsonb)
WHERE kojo_job_id = :kojo_job_id AND kojo_process_id = :owner

-- name: job_parents_lock
-- Inside the child's transaction: lock the parents (a parent's finish waits for the child's
-- edges to commit, and then sees them) and mark those that will have children.
UPDATE kojo_job SET has_children = true
WHERE kojo_job_id = ANY(CAST(:ids AS bigint[]))
RETURNING kojo_job_id, assigned_state

-- name: job_dependency_insert
INSERT INTO kojo_job_dependency (parent_id, child_id)
SELECT p, c FROM unnest(CAST(:parents AS bigint[])) AS p, unnest(CAST(:children AS bigint[])) AS c

-- fragment: payload_has
-- The job's payload JSON text contains :q (case-sensitive); jsonb writes it with a space
-- after each colon and comma, and its non-ASCII characters as they are (:q_ascii is for
-- SQLite).
strpos(CAST(payload AS text), :q) > 0

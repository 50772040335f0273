-- Queries only the MySQL driver runs (backends/mysql*.py): liveness on named locks,
-- guards, wake-ups and lock rings (tables of MySQL's own).

-- An owner is dead when nobody holds its lock (IS_USED_LOCK: the holder's session id).

-- name: owner_lock_free
SELECT IS_USED_LOCK(:lock_name) IS NULL AS dead

-- name: owner_lock
SELECT GET_LOCK(:lock_name, 0) AS got

-- name: owner_unlock
SELECT RELEASE_LOCK(:lock_name) AS released

-- Reaping skips an owner whose claim holds its process row (owner_vouch): `guarded`
-- is 0 then; a row that is gone guards nothing.

-- name: owner_reap_skip
SELECT kojo_process_id FROM kojo_process WHERE kojo_process_id = :kojo_process_id
FOR UPDATE SKIP LOCKED;
SELECT (SELECT count(*) FROM kojo_process WHERE kojo_process_id = :kojo_process_id) AS present,
    :_rowcount AS guarded

-- A locking read of listed rows starts from the list and seeks each row (STRAIGHT_JOIN):
-- as `IN (SELECT ... JSON_TABLE)`, MariaDB scanned a small table's whole index instead,
-- locking (and waiting for) every row on its way, which deadlocked a schedule(after=) with
-- a job process completing and claiming other jobs. The list comes sorted: rows are
-- locked in its order.

-- name: type_rows_lock
SELECT t.type_code
FROM JSON_TABLE(:codes, '$[*]' COLUMNS (code varchar(255) PATH '$')) AS c
STRAIGHT_JOIN kojo_job_type t ON t.type_code = c.code
ORDER BY t.type_code
FOR UPDATE

-- Serialises admissions under a type's concurrency limit (per type, not per key: MySQL
-- has no transaction-scoped named locks).

-- name: limit_type_lock
SELECT concurrency_limit FROM kojo_job_type WHERE type_code = :type_code FOR UPDATE

-- name: child_row_lock
SELECT kojo_job_id FROM kojo_job WHERE kojo_job_id = :child FOR UPDATE

-- name: job_flagged_after_complete
SELECT kojo_job_id AS flagged FROM kojo_job
WHERE kojo_job_id IN :id_list
  AND assigned_state = 'complete_success' AND (awaited OR has_children OR limited)

-- Wake-ups (mysql_wakeups.py): a row per notification, read by every owner's poller.

-- name: wakeup_add
INSERT INTO kojo_wakeup (topic, data) VALUES (:topic, :data)

-- name: wakeup_last
SELECT max(kojo_wakeup_id) AS last_id FROM kojo_wakeup

-- name: wakeup_since
SELECT kojo_wakeup_id, topic, data FROM kojo_wakeup
WHERE kojo_wakeup_id > :after
ORDER BY kojo_wakeup_id
LIMIT 1000

-- name: wakeup_prune
DELETE FROM kojo_wakeup WHERE created_at_date_time < :before LIMIT 1000

-- The maintainer's fold (tally_store.tally_fold): the minutes before :before become the
-- one row per type and outcome (minute 0, writer 0), in one transaction: the rows are
-- locked, summed into the folded rows, then deleted (writers add to the current minute
-- only, never to one this old).

-- name: tally_fold_lock
-- Locks the rows to fold; how many folded rows they make (ON DUPLICATE KEY UPDATE counts
-- a row it changes twice, so tally_fold_add_up's count is not that).
SELECT count(DISTINCT type_code, outcome) AS folds FROM kojo_job_tally
WHERE minute > 0 AND minute < :before FOR UPDATE

-- name: tally_fold_add_up
INSERT INTO kojo_job_tally (minute, type_code, outcome, writer,
{{tally_columns}}
)
SELECT 0, type_code, outcome, 0,
{{tally_sums}}
FROM kojo_job_tally
WHERE minute > 0 AND minute < :before
GROUP BY type_code, outcome
ON DUPLICATE KEY UPDATE
{{tally_added_here}}

-- name: tally_fold_drop
DELETE FROM kojo_job_tally WHERE minute > 0 AND minute < :before

-- name: job_claim_contended
-- After an empty claim: a type job_claim's first step would take, read without its lock.
-- Found, it was most likely skipped because another claim holds its row (MySQL).
{{due_types}}
LIMIT 1

-- name: claim_lane_top
-- The highest priority below :below with a runnable job in a lane (a type's parallel or
-- serial jobs), per runnable state: each one entry of kojo_job_runnable, read in its order
-- (job_claim's walk). Not max(): MariaDB read every entry of the lane for it when the index
-- holds priority descending (10.8 and later keep DESC).
SELECT (SELECT priority FROM kojo_job
        WHERE type_code = :type_code AND can_work_in_parallel = :parallel
          AND next_state_request = 'working' AND assigned_state = 'waiting'
          AND priority < :below
        ORDER BY priority DESC LIMIT 1) AS waiting,
    (SELECT priority FROM kojo_job
        WHERE type_code = :type_code AND can_work_in_parallel = :parallel
          AND next_state_request = 'working' AND assigned_state = 'crashed'
          AND priority < :below
        ORDER BY priority DESC LIMIT 1) AS crashed

-- name: claim_lane_bucket
-- Up to :n due jobs of a lane at one priority, in selection order: per runnable state a
-- range of kojo_job_runnable read in its order, no further than it takes.
(SELECT kojo_job_id, priority, work_at_date_time FROM kojo_job
    WHERE type_code = :type_code AND can_work_in_parallel = :parallel
      AND next_state_request = 'working' AND assigned_state = 'waiting'
      AND priority = :priority AND work_at_date_time <= :now
    ORDER BY work_at_date_time, kojo_job_id LIMIT :n)
UNION ALL
(SELECT kojo_job_id, priority, work_at_date_time FROM kojo_job
    WHERE type_code = :type_code AND can_work_in_parallel = :parallel
      AND next_state_request = 'working' AND assigned_state = 'crashed'
      AND priority = :priority AND work_at_date_time <= :now
    ORDER BY work_at_date_time, kojo_job_id LIMIT :n)

-- name: claim_lane_rows_locked
-- Up to :n due jobs of a parallel lane at one priority and runnable state, in selection
-- order, locked with SKIP LOCKED: claims of one type at the same moment take different
-- jobs (job_claim's walk; a parallel lane of a type without a rate limit needs no lock
-- of its type's row).
SELECT kojo_job_id, priority, work_at_date_time FROM kojo_job
WHERE type_code = :type_code AND can_work_in_parallel = true
  AND next_state_request = 'working' AND assigned_state = :state
  AND priority = :priority AND work_at_date_time <= :now
ORDER BY work_at_date_time, kojo_job_id LIMIT :n
FOR UPDATE SKIP LOCKED

-- name: claim_parallel_types
-- The types without a rate limit that may run now and have a due parallel job, read
-- without a lock: their parallel lanes are claimed job by job (claim_lane_rows_locked),
-- also while another claim holds the type's row.
SELECT t.type_code FROM kojo_job_type t
WHERE NOT t.is_paused AND t.rate_limit_seconds = 0
  AND t.type_code NOT IN ({{skip_types}})
  AND {{parallel_lane_due}}
ORDER BY t.type_code

-- Queries only the PostgreSQL driver runs (backends/postgres.py, postgres_bells.py):
-- liveness probes and guards on advisory locks, wake-ups, and round trips saved.

-- Before a job of a serial type leaves `working` (see job_claim): wait for its type row.

-- name: job_type_lock
SELECT type_code FROM kojo_job_type WHERE type_code = ANY(CAST(:codes AS text[]))
ORDER BY type_code
FOR NO KEY UPDATE

-- A claim's transaction starts here: reaping this owner (owner_reap_guard) waits for
-- it, or it for the reaping; the check that follows then sees the outcome.

-- name: owner_claim_guard
SELECT pg_advisory_xact_lock_shared(:reap_namespace, CAST(:owner AS integer))

-- Reaping excludes every claim of that owner until commit; an owner with a claim in
-- flight is left for the next pass (never wait on a process that may be stuck).

-- name: owner_reap_guard
SELECT pg_try_advisory_xact_lock(:reap_namespace, CAST(:kojo_process_id AS integer)) AS guarded

-- name: owner_probe
SELECT pg_try_advisory_xact_lock(:namespace, CAST(:kojo_process_id AS integer)) AS dead

-- A waiter's bell is its own LISTEN channel; the notification leaves at commit.

-- name: lock_ring
SELECT pg_notify(:bell, '')

-- Conflicts with the FOR UPDATE of an acquirer registering as a waiter: a
-- release either sees its waiter row or is seen by its attempt, never neither.

-- name: lock_semaphore_share
SELECT slots FROM kojo_semaphore WHERE name = :name FOR KEY SHARE

-- One round trip for the common case: a free slot taken at once (by a newcomer,
-- or by a waiter that was woken, whose row goes with the grant). Returns NULL
-- slot and token when the slot count differs, the semaphore is new, all slots
-- are taken, or this owner is dead: the caller then takes the full path. The
-- slot count is read under a key-share lock of the semaphore's row, which a
-- resize (lock_semaphore_get's FOR UPDATE) excludes: a count changed meanwhile
-- is seen, and a take in flight is seen by the resize. A failed try commits
-- without waiting for the disk (it handed out no token).

-- name: lock_take_fast
WITH semaphore AS MATERIALIZED (
    SELECT slots FROM kojo_semaphore WHERE name = :name FOR KEY SHARE
), pick AS (
    SELECT slot FROM kojo_semaphore_slot
    WHERE name = :name AND slot < :slots AND kojo_process_id IS NULL
      AND (SELECT slots FROM semaphore) = :slots
      AND (SELECT NOT pg_try_advisory_xact_lock(:namespace, CAST(:owner AS integer)))
    ORDER BY slot
    LIMIT 1
    FOR UPDATE
), taken AS (
    UPDATE kojo_semaphore_slot s
    SET last_token = s.last_token + 1, token = s.last_token + 1, kojo_process_id = :owner,
        kojo_job_id = :job_id, acquired_at_date_time = :now
    FROM pick
    WHERE s.name = :name AND s.slot = pick.slot AND s.kojo_process_id IS NULL
    RETURNING s.slot, s.token
), gone AS (
    DELETE FROM kojo_semaphore_waiter
    WHERE kojo_semaphore_waiter_id = :waiter_id AND EXISTS (SELECT 1 FROM taken)
), nudge AS (
    -- A waiter's grant moves the one behind it near the head: tell it (lock_waiter_at).
    SELECT pg_notify(bell, '') FROM (
        SELECT bell FROM kojo_semaphore_waiter
        WHERE name = :name AND kojo_semaphore_waiter_id <> CAST(:waiter_id AS bigint)
          AND EXISTS (SELECT 1 FROM taken)
        ORDER BY kojo_semaphore_waiter_id
        OFFSET :near
        LIMIT 1
    ) newly_near
), durability AS (
    SELECT set_config('synchronous_commit', CASE WHEN EXISTS (SELECT 1 FROM taken)
        THEN current_setting('synchronous_commit') ELSE 'off' END, true) AS synchronous_commit
)
SELECT t.slot, t.token, (SELECT count(*) FROM nudge) AS nudged
FROM durability LEFT JOIN taken t ON true

-- A transaction that handed out no token need not wait for the disk: losing
-- it in a crash loses a waiter row or a row lock, which the crash ends anyway.

-- name: lock_commit_async
SELECT set_config('synchronous_commit', 'off', true) AS synchronous_commit

-- name: limit_lock
-- Serialises the admissions of one type and key (docs/concurrency-limits.md).
SELECT pg_advisory_xact_lock(CAST(:namespace AS integer),
    hashtext(:type_code || chr(31) || :concurrency_key))

-- name: job_child_lock
-- Before looking whether a child's last edge went: two parents finishing at once must not
-- each see the other's edge (the next statement's snapshot sees what the other committed).
SELECT kojo_job_id FROM kojo_job WHERE kojo_job_id = :child FOR UPDATE

-- The maintainer's fold (tally_store.tally_fold): the minutes before :before become the
-- one row per type and outcome (minute 0, writer 0), in one statement, so that a row
-- committed meanwhile is either moved whole or left for the next fold.

-- name: tally_fold_move
WITH old AS (
    DELETE FROM kojo_job_tally WHERE minute > 0 AND minute < :before RETURNING *
)
INSERT INTO kojo_job_tally (minute, type_code, outcome, writer,
{{tally_columns}}
)
SELECT 0, type_code, outcome, 0,
{{tally_sums}}
FROM old
GROUP BY type_code, outcome
ON CONFLICT (minute, type_code, outcome, writer) DO UPDATE SET
{{tally_added}}

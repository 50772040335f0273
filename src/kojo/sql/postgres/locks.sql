-- PostgreSQL's text of the mutex and semaphore queries that differ by dialect.
-- sqlite/locks.sql defines the same names (tests/unit/test_sql_names.py checks it).

-- The row lock serialises every acquirer of one name until commit; the caller's
-- own liveness comes in the same round trip.

-- name: lock_semaphore_get
SELECT slots, pg_try_advisory_xact_lock(:namespace, CAST(:owner AS integer)) AS me_dead
FROM kojo_semaphore WHERE name = :name
FOR UPDATE

-- name: lock_semaphore_lock
SELECT slots FROM kojo_semaphore WHERE name = :name FOR UPDATE

-- Row locks, not the semaphore's: the one-statement path above may take a slot
-- at the same time. A slot taken meanwhile fails the re-check of FOR UPDATE,
-- and the next free one is locked instead. A waiter's row goes with its grant.

-- name: lock_slot_take
WITH pick AS (
    SELECT slot FROM kojo_semaphore_slot
    WHERE name = :name AND slot < :slots AND kojo_process_id IS NULL
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
)
SELECT slot, token FROM taken

-- The release, this owner's liveness, and the oldest waiters with theirs, in
-- one statement that also rings the first live waiter (`rung`; the NOTIFY
-- leaves at commit): one row per waiter looked at, or one with NULL waiter
-- columns. A lost release is harmless (a crash of the database ends every
-- holder's session, so its slot is reaped), so its commit need not wait for
-- the disk.

-- name: lock_release
WITH freed AS (
    UPDATE kojo_semaphore_slot
    SET kojo_process_id = NULL, kojo_job_id = NULL, token = NULL, acquired_at_date_time = NULL
    WHERE name = :name AND slot = :slot AND token = :token AND kojo_process_id = :owner
    RETURNING 1
), me AS (
    SELECT (SELECT count(*) FROM freed) AS freed,
        pg_try_advisory_xact_lock(:namespace, CAST(:owner AS integer)) AS dead,
        set_config('synchronous_commit', 'off', true) AS synchronous_commit
), heads AS (
    SELECT w.kojo_semaphore_waiter_id, w.kojo_process_id, w.bell,
        pg_try_advisory_xact_lock(:namespace, CAST(w.kojo_process_id AS integer))
            AND w.kojo_process_id <> :owner AS waiter_dead
    FROM me, LATERAL (
        SELECT kojo_semaphore_waiter_id, kojo_process_id, bell FROM kojo_semaphore_waiter
        WHERE name = :name AND me.freed > 0
        ORDER BY kojo_semaphore_waiter_id
        LIMIT :limit
    ) w
), ranked AS (
    SELECT heads.*, count(*) FILTER (WHERE NOT waiter_dead)
        OVER (ORDER BY kojo_semaphore_waiter_id) AS live_rank
    FROM heads
)
SELECT me.freed, me.dead, r.kojo_process_id, r.bell, r.waiter_dead,
    CASE WHEN NOT r.waiter_dead AND r.live_rank = 1
        THEN (SELECT count(*) FROM pg_notify(r.bell, '')) > 0
        ELSE false
    END AS rung
FROM me
LEFT JOIN ranked r ON true
ORDER BY r.kojo_semaphore_waiter_id

-- Oldest first, with each waiter's liveness (a NOTIFY cannot tell whether
-- anyone heard it, so a release skips waiters that died).

-- name: lock_waiters_next
SELECT kojo_semaphore_waiter_id, kojo_process_id, bell,
    pg_try_advisory_xact_lock(:namespace, CAST(kojo_process_id AS integer)) AS dead
FROM (
    SELECT kojo_semaphore_waiter_id, kojo_process_id, bell FROM kojo_semaphore_waiter
    WHERE name = :name
    ORDER BY kojo_semaphore_waiter_id
    LIMIT :limit
) oldest
ORDER BY kojo_semaphore_waiter_id

-- As the shared one, with the liveness of each other holder (`dead`), probed
-- in the same round trip.

-- name: lock_slots
SELECT s.slot, s.kojo_process_id, p.process_id,
    (SELECT count(*) FROM kojo_semaphore_waiter w
     WHERE w.name = :name AND w.kojo_semaphore_waiter_id
         < COALESCE(CAST(:waiter_id AS bigint), 9223372036854775807)) AS ahead,
    CASE WHEN s.kojo_process_id IS NOT NULL AND s.kojo_process_id <> :me
        THEN pg_try_advisory_xact_lock(:namespace, CAST(s.kojo_process_id AS integer))
    END AS dead
FROM kojo_semaphore_slot s
LEFT JOIN kojo_process p ON p.kojo_process_id = s.kojo_process_id
WHERE s.name = :name AND s.slot < :slots
ORDER BY s.slot

-- A transaction that registers a waiter hands out no token: no WAL flush.

-- name: lock_waiter_add
INSERT INTO kojo_semaphore_waiter (name, kojo_process_id, kojo_job_id, bell, since_date_time)
VALUES (:name, :owner, :job_id, :bell, :now)
RETURNING kojo_semaphore_waiter_id, set_config('synchronous_commit', 'off', true) AS async

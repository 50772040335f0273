-- SQLite's text of the mutex and semaphore queries that differ by dialect.
-- postgres/locks.sql defines the same names (tests/unit/test_sql_names.py checks it).
-- Every write runs inside BEGIN IMMEDIATE, so no row locks are needed.

-- name: lock_semaphore_get
SELECT slots FROM kojo_semaphore WHERE name = :name

-- Orders a waiter's removal after a release in flight (PostgreSQL: a row lock).

-- name: lock_semaphore_lock
SELECT slots FROM kojo_semaphore WHERE name = :name

-- Takes the lowest free slot; the new token is last_token + 1 (SET sees the old row).

-- name: lock_slot_take
UPDATE kojo_semaphore_slot
SET last_token = last_token + 1, token = last_token + 1, kojo_process_id = :owner,
    kojo_job_id = :job_id, acquired_at_date_time = :now
WHERE name = :name AND kojo_process_id IS NULL AND slot = (
    SELECT min(slot) FROM kojo_semaphore_slot
    WHERE name = :name AND slot < :slots AND kojo_process_id IS NULL)
RETURNING slot, token

-- Holders of each slot, and how many waiters are ahead of waiter :waiter_id
-- (of all of them when it is NULL).

-- name: lock_slots
SELECT s.slot, s.kojo_process_id, p.process_id,
    (SELECT count(*) FROM kojo_semaphore_waiter w
     WHERE w.name = :name AND w.kojo_semaphore_waiter_id
         < COALESCE(CAST(:waiter_id AS bigint), 9223372036854775807)) AS ahead
FROM kojo_semaphore_slot s
LEFT JOIN kojo_process p ON p.kojo_process_id = s.kojo_process_id
WHERE s.name = :name AND s.slot < :slots
ORDER BY s.slot

-- Compare-and-set on the whole grant: only the holder of this very token frees it.

-- name: lock_release
UPDATE kojo_semaphore_slot
SET kojo_process_id = NULL, kojo_job_id = NULL, token = NULL, acquired_at_date_time = NULL
WHERE name = :name AND slot = :slot AND token = :token AND kojo_process_id = :owner
RETURNING 1 AS freed,
    (SELECT count(*) FROM kojo_semaphore_waiter WHERE name = :name) AS waiters

-- name: lock_waiter_add
INSERT INTO kojo_semaphore_waiter (name, kojo_process_id, kojo_job_id, bell, since_date_time)
VALUES (:name, :owner, :job_id, :bell, :now)
RETURNING kojo_semaphore_waiter_id

-- Oldest first: a release wakes the waiter that has waited longest.

-- name: lock_waiters_next
SELECT kojo_semaphore_waiter_id, kojo_process_id, bell FROM kojo_semaphore_waiter
WHERE name = :name
ORDER BY kojo_semaphore_waiter_id
LIMIT :limit

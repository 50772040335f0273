-- Mutexes and semaphores (src/kojo/locks.py). Lock names are always bound
-- parameters. Slot rows are never deleted: a slot's last_token only grows.

-- name: lock_semaphore_get
SELECT slots FROM kojo_semaphore WHERE name = :name

-- Orders a waiter's removal after a release in flight (PostgreSQL: a row lock).

-- name: lock_semaphore_lock
SELECT slots FROM kojo_semaphore WHERE name = :name

-- name: lock_semaphore_create
INSERT INTO kojo_semaphore (name, slots) VALUES (:name, :slots)
ON CONFLICT (name) DO NOTHING

-- name: lock_semaphore_resize
UPDATE kojo_semaphore SET slots = :slots WHERE name = :name

-- name: lock_slots_create
WITH RECURSIVE numbers (n) AS (
    SELECT 0 UNION ALL SELECT n + 1 FROM numbers WHERE n + 1 < :slots
)
INSERT INTO kojo_semaphore_slot (name, slot) SELECT :name, n FROM numbers WHERE true
ON CONFLICT (name, slot) DO NOTHING

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

-- name: lock_name_holders
SELECT DISTINCT kojo_process_id FROM kojo_semaphore_slot
WHERE name = :name AND kojo_process_id IS NOT NULL

-- name: lock_free_slots
SELECT count(*) AS free FROM kojo_semaphore_slot s
JOIN kojo_semaphore m ON m.name = s.name
WHERE s.name = :name AND s.slot < m.slots AND s.kojo_process_id IS NULL

-- Compare-and-set on the whole grant: only the holder of this very token frees it.

-- name: lock_release
UPDATE kojo_semaphore_slot
SET kojo_process_id = NULL, kojo_job_id = NULL, token = NULL, acquired_at_date_time = NULL
WHERE name = :name AND slot = :slot AND token = :token AND kojo_process_id = :owner
RETURNING 1 AS freed,
    (SELECT count(*) FROM kojo_semaphore_waiter WHERE name = :name) AS waiters

-- name: lock_is_held
SELECT 1 AS held FROM kojo_semaphore_slot
WHERE name = :name AND slot = :slot AND token = :token AND kojo_process_id = :owner

-- name: lock_waiter_add
INSERT INTO kojo_semaphore_waiter (name, kojo_process_id, kojo_job_id, bell, since_date_time)
VALUES (:name, :owner, :job_id, :bell, :now)
RETURNING kojo_semaphore_waiter_id

-- name: lock_waiter_remove
DELETE FROM kojo_semaphore_waiter WHERE kojo_semaphore_waiter_id = :waiter_id

-- Oldest first: a release wakes the waiter that has waited longest.

-- name: lock_waiters_next
SELECT kojo_semaphore_waiter_id, kojo_process_id, bell FROM kojo_semaphore_waiter
WHERE name = :name
ORDER BY kojo_semaphore_waiter_id
LIMIT :limit

-- The waiter `offset` places from the head: when one ahead of it leaves, it
-- has moved near the head, where waiters watch the holders closely.

-- name: lock_waiter_at
SELECT kojo_process_id, bell FROM kojo_semaphore_waiter
WHERE name = :name
ORDER BY kojo_semaphore_waiter_id
LIMIT 1 OFFSET :offset

-- name: lock_list_holders
SELECT s.name, s.slot, m.slots, s.token, s.kojo_process_id, p.host_name, p.process_id, p.path,
    s.kojo_job_id, s.acquired_at_date_time
FROM kojo_semaphore_slot s
JOIN kojo_semaphore m ON m.name = s.name
LEFT JOIN kojo_process p ON p.kojo_process_id = s.kojo_process_id
WHERE s.kojo_process_id IS NOT NULL
ORDER BY s.name, s.slot

-- name: lock_list_waiters
SELECT w.name, m.slots, w.kojo_process_id, p.host_name, p.process_id, p.path, w.kojo_job_id,
    w.since_date_time
FROM kojo_semaphore_waiter w
LEFT JOIN kojo_semaphore m ON m.name = w.name
LEFT JOIN kojo_process p ON p.kojo_process_id = w.kojo_process_id
ORDER BY w.name, w.kojo_semaphore_waiter_id

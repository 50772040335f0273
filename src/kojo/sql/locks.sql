-- Mutexes and semaphores (src/kojo/locks.py). Lock names are always bound
-- parameters. Slot rows are never deleted: a slot's last_token only grows.

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

-- name: lock_name_holders
SELECT DISTINCT kojo_process_id FROM kojo_semaphore_slot
WHERE name = :name AND kojo_process_id IS NOT NULL

-- name: lock_free_slots
SELECT count(*) AS free FROM kojo_semaphore_slot s
JOIN kojo_semaphore m ON m.name = s.name
WHERE s.name = :name AND s.slot < m.slots AND s.kojo_process_id IS NULL

-- name: lock_is_held
SELECT 1 AS held FROM kojo_semaphore_slot
WHERE name = :name AND slot = :slot AND token = :token AND kojo_process_id = :owner

-- name: lock_waiter_remove
DELETE FROM kojo_semaphore_waiter WHERE kojo_semaphore_waiter_id = :waiter_id

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

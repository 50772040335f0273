-- MySQL's text of the mutex and semaphore queries that differ by dialect.
-- sqlite/locks.sql and postgres/locks.sql define the same names. Liveness is probed in
-- the queries themselves (`:lock_prefix`: an owner's anchor session holds the named lock
-- `<prefix>p<id>` while it lives, backends/mysql_names.py), each probe a round trip saved
-- while the semaphore's or the slot's row is locked: every other acquirer of the name
-- waits for that row, so these transactions are kept to as few round trips as they can.

-- The row lock serialises every acquirer of one name until commit; the acquirer's own
-- liveness comes in the same round trip.

-- name: lock_semaphore_get
SELECT slots, IS_USED_LOCK(CONCAT(:lock_prefix, 'p', :owner)) IS NULL AS me_dead
FROM kojo_semaphore WHERE name = :name FOR UPDATE

-- name: lock_semaphore_lock
SELECT slots FROM kojo_semaphore WHERE name = :name FOR UPDATE

-- The lowest free slot, locked; then the grant: the new token is last_token + 1 (the
-- SET reads token's value before last_token changes).

-- name: lock_slot_take
SELECT slot FROM kojo_semaphore_slot
WHERE name = :name AND slot < :slots AND kojo_process_id IS NULL
ORDER BY slot
LIMIT 1
FOR UPDATE;
UPDATE kojo_semaphore_slot
SET token = last_token + 1, last_token = last_token + 1, kojo_process_id = :owner,
    kojo_job_id = :job_id, acquired_at_date_time = :now
WHERE name = :name AND slot IN :_ids AND kojo_process_id IS NULL;
SELECT slot, token FROM kojo_semaphore_slot
WHERE name = :name AND slot IN :_ids AND kojo_process_id = :owner AND :_rowcount > 0

-- name: lock_slots
SELECT s.slot, s.kojo_process_id, p.process_id,
    (SELECT count(*) FROM kojo_semaphore_waiter w
     WHERE w.name = :name AND w.kojo_semaphore_waiter_id
         < COALESCE(:waiter_id, 9223372036854775807)) AS ahead,
    CASE WHEN s.kojo_process_id IS NOT NULL AND s.kojo_process_id <> :me
        THEN IS_USED_LOCK(CONCAT(:lock_prefix, 'p', s.kojo_process_id)) IS NULL
    END AS dead
FROM kojo_semaphore_slot s
LEFT JOIN kojo_process p ON p.kojo_process_id = s.kojo_process_id
WHERE s.name = :name AND s.slot < :slots
ORDER BY s.slot

-- Compare-and-set on the whole grant: only the holder of this very token frees it.

-- name: lock_release
UPDATE kojo_semaphore_slot
SET kojo_process_id = NULL, kojo_job_id = NULL, token = NULL, acquired_at_date_time = NULL
WHERE name = :name AND slot = :slot AND token = :token AND kojo_process_id = :owner;
SELECT :_rowcount AS freed, IS_USED_LOCK(CONCAT(:lock_prefix, 'p', :owner)) IS NULL AS dead

-- name: lock_waiter_add
INSERT INTO kojo_semaphore_waiter (name, kojo_process_id, kojo_job_id, bell, since_date_time)
VALUES (:name, :owner, :job_id, :bell, :now)
RETURNING kojo_semaphore_waiter_id

-- name: lock_waiters_next
SELECT kojo_semaphore_waiter_id, kojo_process_id, bell,
    IS_USED_LOCK(CONCAT(:lock_prefix, 'p', kojo_process_id)) IS NULL AS dead
FROM kojo_semaphore_waiter
WHERE name = :name
ORDER BY kojo_semaphore_waiter_id
LIMIT :limit

-- override: lock_semaphore_create
INSERT IGNORE INTO kojo_semaphore (name, slots) VALUES (:name, :slots)

-- override: lock_slots_create
INSERT IGNORE INTO kojo_semaphore_slot (name, slot)
WITH RECURSIVE numbers (n) AS (
    SELECT 0 UNION ALL SELECT n + 1 FROM numbers WHERE n + 1 < :slots
)
SELECT :name, n FROM numbers

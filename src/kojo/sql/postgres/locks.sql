-- PostgreSQL versions of lock queries (see ../locks.sql).

-- The row lock serialises every acquirer of one name until commit.
-- name: lock_semaphore_get
SELECT slots FROM kojo_semaphore WHERE name = :name FOR UPDATE

-- A waiter's bell is its own LISTEN channel; the notification leaves at commit.
-- name: lock_ring
SELECT pg_notify(:bell, '')

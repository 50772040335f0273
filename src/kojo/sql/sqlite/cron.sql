-- SQLite's text of the cron queries that differ by dialect.
-- postgres/cron.sql defines the same names (tests/unit/test_sql_names.py checks it).
-- Every write runs inside BEGIN IMMEDIATE, so no row locks are needed.

-- The type row again, inside the write transaction (PostgreSQL locks it: postgres/cron.sql).

-- name: cron_type_lock
SELECT type_code, cron_expression, is_enabled, catch_up, catch_up_window,
    cron_scheduled_until_date_time, cron_scheduled_expression
FROM kojo_job_type
WHERE type_code = :type_code

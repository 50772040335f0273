-- PostgreSQL's text of the cron queries that differ by dialect.
-- sqlite/cron.sql defines the same names (tests/unit/test_sql_names.py checks it).

-- NO KEY UPDATE: serialises schedulers of one type without blocking inserts of its jobs
-- (their foreign key check takes KEY SHARE).

-- name: cron_type_lock
SELECT type_code, cron_expression, is_enabled, catch_up, catch_up_window,
    cron_scheduled_until_date_time, cron_scheduled_expression
FROM kojo_job_type
WHERE type_code = :type_code
FOR NO KEY UPDATE

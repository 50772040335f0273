-- MySQL's text of the cron queries that differ by dialect (see postgres/cron.sql).

-- name: cron_type_lock
SELECT type_code, cron_expression, is_enabled, catch_up, catch_up_window,
    cron_scheduled_until_date_time, cron_scheduled_expression
FROM kojo_job_type
WHERE type_code = :type_code
FOR UPDATE

-- override: cron_job_insert
-- IGNORE: the job of a type's due minute exists already (kojo_job_cron_fire).
INSERT IGNORE INTO kojo_job (
    type_code, name, priority, importance, work_at_date_time, next_state_request,
    assigned_state, previous_state, worker_uri, can_work_in_parallel,
    last_transition_date_time, created_at_date_time, cron_fire_date_time
)
SELECT t.type_code, t.name, t.default_importance, t.default_importance, :fire,
    CASE WHEN t.schedule_limit > 0 THEN 'schedule_limit_check' ELSE 'working' END,
    'waiting', 'new', t.worker_uri, t.can_work_in_parallel, :now, :now, :fire
FROM kojo_job_type t
WHERE t.type_code = :type_code AND t.is_enabled
RETURNING kojo_job_id

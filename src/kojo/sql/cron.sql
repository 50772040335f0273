-- Static cron scheduling (cron_scheduler.py). Exactly-once per (type, due minute) is the
-- unique partial index kojo_job_cron_fire; the horizon columns only save work and keep a
-- deleted cron job from being made again.

-- name: cron_types
SELECT type_code, cron_expression, is_enabled, catch_up, catch_up_window,
    cron_scheduled_until_date_time, cron_scheduled_expression
FROM kojo_job_type
WHERE cron_expression IS NOT NULL
ORDER BY type_code

-- name: cron_job_insert
INSERT INTO kojo_job (
    type_code, name, priority, importance, work_at_date_time, next_state_request,
    assigned_state, previous_state, worker_uri, can_work_in_parallel,
    last_transition_date_time, created_at_date_time, cron_fire_date_time
)
SELECT t.type_code, t.name, t.default_importance, t.default_importance, :fire,
    CASE WHEN t.schedule_limit > 0 THEN 'schedule_limit_check' ELSE 'working' END,
    'waiting', 'new', t.worker_uri, t.can_work_in_parallel, :now, :now, :fire
FROM kojo_job_type t
WHERE t.type_code = :type_code AND t.is_enabled
ON CONFLICT (type_code, cron_fire_date_time) WHERE cron_fire_date_time IS NOT NULL DO NOTHING
RETURNING kojo_job_id

-- name: cron_set_horizon
UPDATE kojo_job_type
SET cron_scheduled_until_date_time = :until, cron_scheduled_expression = :expression
WHERE type_code = :type_code

-- A disabled type's due minutes are skipped, not owed: move its horizon past them. At most
-- one process succeeds per minute, and that one logs the skip.

-- name: cron_skip_disabled
UPDATE kojo_job_type
SET cron_scheduled_until_date_time = :until, cron_scheduled_expression = :expression
WHERE type_code = :type_code AND NOT is_enabled
  AND (cron_scheduled_until_date_time IS NULL OR cron_scheduled_until_date_time < :until)

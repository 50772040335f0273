-- Maintenance duties (maintenance.py): the schedule-limit gate and deletion of old rows.

-- name: maintenance_pending_types
SELECT DISTINCT type_code FROM kojo_job
WHERE next_state_request = 'schedule_limit_check' AND assigned_state = 'waiting'
  AND work_at_date_time <= :now

-- name: maintenance_pending_jobs
SELECT * FROM kojo_job
WHERE type_code = :type_code AND next_state_request = 'schedule_limit_check'
  AND assigned_state = 'waiting' AND work_at_date_time <= :now
ORDER BY work_at_date_time, kojo_job_id
LIMIT :limit

-- Running jobs plus runnable ones (waiting or crashed): Kōjō's count for the limit.

-- name: maintenance_active_jobs
SELECT count(*) AS active FROM kojo_job
WHERE type_code = :type_code AND (assigned_state = 'working' OR next_state_request = 'working')

-- Is there anything to delete? (No write transaction, hence no SQLite write lock, when not.)

-- name: maintenance_any_expired
SELECT kojo_job_id FROM kojo_job
WHERE delete_after_date_time <= :now
  AND assigned_state IN ('complete_success', 'complete_failed',
      'complete_failed_schedule_limit_check', 'complete_terminated')
LIMIT 1

-- name: maintenance_oldest_message
SELECT kojo_message_id, created_at_date_time FROM kojo_message
ORDER BY kojo_message_id
LIMIT 1

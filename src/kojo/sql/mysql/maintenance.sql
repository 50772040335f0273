-- MySQL's text of the maintenance queries that differ by dialect (see postgres/maintenance.sql).

-- name: maintenance_gate_type
SELECT type_code, schedule_limit, schedule_limit_allowance, auto_delete_interval_duration
FROM kojo_job_type
WHERE type_code = :type_code
FOR UPDATE

-- SKIP LOCKED: rows another deleter (or an operator) holds are left for the next batch.

-- name: maintenance_delete_completed
SELECT kojo_job_id FROM kojo_job
WHERE delete_after_date_time <= :now
  AND assigned_state IN ('complete_success', 'complete_failed',
      'complete_failed_schedule_limit_check', 'complete_terminated')
ORDER BY delete_after_date_time
LIMIT :batch
FOR UPDATE SKIP LOCKED;
DELETE FROM kojo_job WHERE kojo_job_id IN :_ids

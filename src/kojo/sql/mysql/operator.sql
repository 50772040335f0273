-- MySQL's text of operator queries whose shared text MySQL does not take (CAST AS text,
-- a LIMIT inside IN).

-- override: job_page
SELECT * FROM kojo_job
WHERE (:type_code IS NULL OR type_code = :type_code)
  AND (:state IS NULL OR assigned_state = :state)
  AND (:before IS NULL OR kojo_job_id < :before)
  AND (:future_cron OR cron_fire_date_time IS NULL OR assigned_state <> 'waiting'
    OR cron_fire_date_time <= :now)
ORDER BY kojo_job_id DESC
LIMIT :limit

-- override: job_page_few
SELECT * FROM kojo_job
WHERE type_code IN (SELECT type_code FROM kojo_job_type) AND assigned_state = :state
  AND (:type_code IS NULL OR type_code = :type_code)
  AND (:before IS NULL OR kojo_job_id < :before)
  AND (:future_cron OR cron_fire_date_time IS NULL OR assigned_state <> 'waiting'
    OR cron_fire_date_time <= :now)
ORDER BY kojo_job_id DESC
LIMIT :limit

-- override: job_page_future_cron
SELECT count(*) AS future FROM kojo_job
WHERE (:type_code IS NULL OR type_code = :type_code)
  AND (:state IS NULL OR assigned_state = :state)
  AND (:before IS NULL OR kojo_job_id < :before)
  AND cron_fire_date_time > :now AND assigned_state = 'waiting'

-- override: job_search
-- The window of the :scan newest jobs is a derived table: MariaDB takes no LIMIT inside IN.
SELECT j.* FROM (
    SELECT kojo_job_id FROM kojo_job
    WHERE (:before IS NULL OR kojo_job_id < :before)
    ORDER BY kojo_job_id DESC
    LIMIT :scan) AS w
JOIN kojo_job j ON j.kojo_job_id = w.kojo_job_id
WHERE {{payload_has}}
  AND (:type_code IS NULL OR j.type_code = :type_code)
  AND (:state IS NULL OR j.assigned_state = :state)
ORDER BY j.kojo_job_id DESC
LIMIT :limit

-- override: job_search_window
SELECT min(kojo_job_id) AS lowest, count(*) AS scanned FROM (
    SELECT kojo_job_id FROM kojo_job
    WHERE (:before IS NULL OR kojo_job_id < :before)
    ORDER BY kojo_job_id DESC
    LIMIT :scan) AS w

-- override: job_purge_count
SELECT count(*) AS purged FROM kojo_job
WHERE assigned_state IN ('complete_success', 'complete_failed',
      'complete_failed_schedule_limit_check', 'complete_terminated')
  AND (:state IS NULL OR assigned_state = :state)
  AND (:type_code IS NULL OR type_code = :type_code)
  AND completed_at_date_time <= :cutoff

-- override: job_purge
DELETE FROM kojo_job
WHERE assigned_state IN ('complete_success', 'complete_failed',
      'complete_failed_schedule_limit_check', 'complete_terminated')
  AND (:state IS NULL OR assigned_state = :state)
  AND (:type_code IS NULL OR type_code = :type_code)
  AND completed_at_date_time <= :cutoff
ORDER BY kojo_job_id
LIMIT :batch

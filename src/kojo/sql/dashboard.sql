-- The dashboard's reads (dashboard/queries.py), the same text in both dialects. Each is
-- cheap at scrape and page time: counts group over the kojo_job_type_state index and
-- the (small) process table, a page is a range of the primary key.

-- name: dashboard_job_counts
SELECT type_code, assigned_state, count(*) AS count FROM kojo_job
GROUP BY type_code, assigned_state
ORDER BY type_code, assigned_state

-- name: dashboard_process_counts
SELECT host_name, kind, count(*) AS count FROM kojo_process
GROUP BY host_name, kind
ORDER BY host_name, kind

-- name: dashboard_job_page
-- Newest first; :before pages back (ids below it).
SELECT * FROM kojo_job
WHERE (CAST(:type_code AS text) IS NULL OR type_code = :type_code)
  AND (CAST(:state AS text) IS NULL OR assigned_state = :state)
  AND (CAST(:before AS bigint) IS NULL OR kojo_job_id < :before)
ORDER BY kojo_job_id DESC
LIMIT :limit

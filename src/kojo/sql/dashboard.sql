-- The dashboard's own reads (dashboard/queries.py; the rest are the App's), the same text
-- in both dialects. Cheap at scrape time: the process table is small.

-- name: dashboard_process_counts
SELECT host_name, kind, count(*) AS count FROM kojo_process
GROUP BY host_name, kind
ORDER BY host_name, kind

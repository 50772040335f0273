-- The dashboard's own reads (dashboard/queries.py; the rest are the App's), the same text
-- in both dialects. Cheap at scrape time: the process table is small.

-- name: dashboard_process_counts
SELECT host_name, kind, count(*) AS count FROM kojo_process
GROUP BY host_name, kind
ORDER BY host_name, kind

-- Totals per type and outcome since the database was installed, for /metrics: a sum over
-- the tally's rows (one folded row per type and outcome, and the last hour's minutes).

-- name: dashboard_tally_totals
SELECT type_code, outcome,
{{tally_sums}}
FROM kojo_job_tally
GROUP BY type_code, outcome
ORDER BY type_code, outcome

-- Finished jobs per minute and outcome since :since (a minute number), for the charts.

-- name: dashboard_tally_minutes
SELECT minute, outcome, sum(finished) AS finished FROM kojo_job_tally
WHERE minute >= :since
GROUP BY minute, outcome
ORDER BY minute, outcome

-- Queries only the SQLite driver runs (backends/sqlite.py).

-- name: job_complete_flagged
-- After job_complete_success, when it completed fewer than asked: the jobs whose end sets
-- something off (job_store._job_finished), completed, their ids returned.
{{complete_success}}
RETURNING kojo_job_id AS flagged

-- name: job_rate_periods
-- The rate-limited types and their periods, read once per claim that claimed anything
-- (sqlite.py: job_claim's RETURNING cannot read its FROM).
SELECT type_code, rate_limit_seconds FROM kojo_job_type WHERE rate_limit_count > 0

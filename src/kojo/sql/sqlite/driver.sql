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

-- The maintainer's fold (tally_store.tally_fold): the minutes before :before become the
-- one row per type and outcome (minute 0, writer 0). Two statements in one transaction
-- (writes are serial here): the sums, then the rows summed go. (The WHERE tells SQLite's
-- parser where ON CONFLICT starts.)

-- name: tally_fold_sums
INSERT INTO kojo_job_tally (minute, type_code, outcome, writer,
{{tally_columns}}
)
SELECT 0, type_code, outcome, 0,
{{tally_sums}}
FROM kojo_job_tally
WHERE minute > 0 AND minute < :before
GROUP BY type_code, outcome
ON CONFLICT (minute, type_code, outcome, writer) DO UPDATE SET
{{tally_added}}

-- name: tally_fold_delete
DELETE FROM kojo_job_tally WHERE minute > 0 AND minute < :before

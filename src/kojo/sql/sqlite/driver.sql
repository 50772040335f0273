-- Queries only the SQLite driver runs (backends/sqlite.py).

-- name: job_complete_flagged
-- After job_complete_success: which of those jobs' ends set something off
-- (job_store._job_finished). A second statement costs less here than a RETURNING row per
-- job: most completions find none.
SELECT kojo_job_id AS flagged FROM kojo_job
WHERE kojo_job_id IN (SELECT value FROM json_each(:ids))
  AND assigned_state = 'complete_success' AND (awaited OR has_children OR limited)

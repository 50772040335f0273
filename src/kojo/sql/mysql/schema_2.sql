-- kojo schema version 2: the claim's index by lane (docs/claiming.md). MySQL indexes
-- every row (no partial indexes).
CREATE INDEX IF NOT EXISTS kojo_job_runnable
    ON kojo_job (type_code, can_work_in_parallel, next_state_request, assigned_state,
        priority DESC, work_at_date_time, kojo_job_id);
-- Whether a lane has a due job at all (the claim's first step): one seek per lane.
CREATE INDEX IF NOT EXISTS kojo_job_due
    ON kojo_job (type_code, can_work_in_parallel, next_state_request, assigned_state,
        work_at_date_time);
DROP INDEX IF EXISTS kojo_job_ready ON kojo_job

-- kojo schema version 2: the claim walks lanes (a type's parallel or serial jobs) priority
-- by priority (docs/claiming.md), so jobs that cannot run now are never read.
CREATE INDEX IF NOT EXISTS kojo_job_runnable
    ON kojo_job (type_code, can_work_in_parallel, priority DESC, work_at_date_time, kojo_job_id)
    WHERE next_state_request = 'working' AND assigned_state IN ('waiting', 'crashed');
-- Version 1's claim index: every job that cannot run now sat in its path.
DROP INDEX IF EXISTS kojo_job_ready;

-- kojo schema version 3: unique jobs, results and progress, dependencies, concurrency limits
-- (docs/unique-jobs.md, docs/results.md, docs/dependencies.md).
ALTER TABLE kojo_job ADD COLUMN unique_key text;
ALTER TABLE kojo_job ADD COLUMN result text;
ALTER TABLE kojo_job ADD COLUMN progress real;
ALTER TABLE kojo_job ADD COLUMN progress_note text;
-- Someone waits in app.result(): its finish is published on kojo.finished.
ALTER TABLE kojo_job ADD COLUMN awaited integer NOT NULL DEFAULT 0;
-- At most one unfinished job per type and key: an insert that meets one does nothing.
CREATE UNIQUE INDEX IF NOT EXISTS kojo_job_unique ON kojo_job (type_code, unique_key)
    WHERE unique_key IS NOT NULL AND assigned_state NOT IN (
        'complete_success', 'complete_failed', 'complete_failed_schedule_limit_check',
        'complete_terminated');
-- Dependencies: a child waits (waiting/after) until each parent it has an edge from
-- completes; a parent with children says so, so that only its finish looks for them.
ALTER TABLE kojo_job ADD COLUMN has_children integer NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS kojo_job_dependency (
    parent_id bigint NOT NULL,
    child_id bigint NOT NULL REFERENCES kojo_job (kojo_job_id) ON DELETE CASCADE,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX IF NOT EXISTS kojo_job_dependency_child ON kojo_job_dependency (child_id);
-- Concurrency limits (docs/concurrency-limits.md): a limited job waits (waiting/limit)
-- until admitted; at most concurrency_limit jobs of a type and key are admitted at once.
ALTER TABLE kojo_job_type ADD COLUMN concurrency_limit integer NOT NULL DEFAULT 0;
ALTER TABLE kojo_job ADD COLUMN concurrency_key text NOT NULL DEFAULT '';
ALTER TABLE kojo_job ADD COLUMN limited integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS kojo_job_limit_queue
    ON kojo_job (type_code, concurrency_key, priority DESC, work_at_date_time, kojo_job_id)
    WHERE next_state_request = 'limit';
CREATE INDEX IF NOT EXISTS kojo_job_limit_admitted ON kojo_job (type_code, concurrency_key)
    WHERE limited AND (assigned_state = 'working' OR (next_state_request = 'working'
        AND assigned_state IN ('waiting', 'crashed')));

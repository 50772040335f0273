-- kojo schema version 3: unique jobs, results and progress, dependencies, concurrency limits
-- (docs/unique-jobs.md, docs/results.md, docs/dependencies.md).
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS unique_key varchar(255);
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS result json;
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS progress double;
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS progress_note text;
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS awaited boolean NOT NULL DEFAULT false;
-- At most one unfinished job per type and key: the key of a finished job is NULL here.
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS unfinished_unique_key varchar(255) AS (
    CASE WHEN assigned_state NOT IN ('complete_success', 'complete_failed',
        'complete_failed_schedule_limit_check', 'complete_terminated') THEN unique_key END
    ) VIRTUAL INVISIBLE;
CREATE UNIQUE INDEX IF NOT EXISTS kojo_job_unique ON kojo_job (type_code, unfinished_unique_key);
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS has_children boolean NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS kojo_job_dependency (
    parent_id bigint NOT NULL,
    child_id bigint NOT NULL,
    PRIMARY KEY (parent_id, child_id),
    KEY kojo_job_dependency_child (child_id),
    CONSTRAINT kojo_job_dependency_fk FOREIGN KEY (child_id) REFERENCES kojo_job (kojo_job_id)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
ALTER TABLE kojo_job_type ADD COLUMN IF NOT EXISTS concurrency_limit integer NOT NULL DEFAULT 0;
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS concurrency_key varchar(255) NOT NULL DEFAULT '';
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS limited boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS kojo_job_limit_queue
    ON kojo_job (type_code, concurrency_key, next_state_request, priority DESC,
        work_at_date_time, kojo_job_id)

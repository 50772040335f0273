-- kojo schema version 5: a job's timeline (docs/reference/cli.md, "A job's timeline").
-- A success keeps its claim's time (the last transition's, while it worked) in
-- started_at_date_time, in the statement that completes it; the common transitions
-- (created, claimed, completed) are read back from the job's row. Only
-- the rare ones (hold, release, retry, crash, panic, cancel, fail, operator re-run,
-- termination by a parent) add a kojo_job_event row, so the plain drain inserts nothing.
-- The rows go with their job (ON DELETE CASCADE: purge, and the maintainer's deletion).
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS started_at_date_time timestamptz;
CREATE TABLE IF NOT EXISTS kojo_job_event (
    kojo_job_event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kojo_job_id bigint NOT NULL REFERENCES kojo_job (kojo_job_id) ON DELETE CASCADE,
    at_date_time timestamptz NOT NULL,
    transition text NOT NULL,
    from_state text NOT NULL,
    to_state text NOT NULL,
    actor text NOT NULL,
    kojo_process_id bigint,
    note text
);
CREATE INDEX IF NOT EXISTS kojo_job_event_job ON kojo_job_event (kojo_job_id, kojo_job_event_id);

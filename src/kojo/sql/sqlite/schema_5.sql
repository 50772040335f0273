-- kojo schema version 5: a job's timeline (docs/reference/cli.md, "A job's timeline", see
-- postgres/schema_5.sql for why only the rare transitions have rows).
ALTER TABLE kojo_job ADD COLUMN started_at_date_time text;
CREATE TABLE IF NOT EXISTS kojo_job_event (
    kojo_job_event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    kojo_job_id bigint NOT NULL REFERENCES kojo_job (kojo_job_id) ON DELETE CASCADE,
    at_date_time text NOT NULL,
    transition text NOT NULL,
    from_state text NOT NULL,
    to_state text NOT NULL,
    actor text NOT NULL,
    kojo_process_id bigint,
    note text
);
CREATE INDEX IF NOT EXISTS kojo_job_event_job ON kojo_job_event (kojo_job_id, kojo_job_event_id);

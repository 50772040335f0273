-- kojo schema version 4: rate limits (docs/rate-limits.md).
-- A type's rate_limit "N/PERIOD" is kept as text and as its parts. Each of its N slots
-- holds the time from which it may be taken again (a start plus the period); a claim
-- takes one only while it holds the type's row, so at most N jobs start in any PERIOD.
-- rate_free_date_time is the earliest of them: a claim reads it from the row it locks.
ALTER TABLE kojo_job_type ADD COLUMN IF NOT EXISTS rate_limit text NOT NULL DEFAULT '';
ALTER TABLE kojo_job_type ADD COLUMN IF NOT EXISTS rate_limit_count integer NOT NULL DEFAULT 0;
ALTER TABLE kojo_job_type ADD COLUMN IF NOT EXISTS rate_limit_seconds double precision
    NOT NULL DEFAULT 0;
ALTER TABLE kojo_job_type ADD COLUMN IF NOT EXISTS rate_free_date_time timestamptz
    NOT NULL DEFAULT '1970-01-01 00:00:00+00';
CREATE TABLE IF NOT EXISTS kojo_rate_slot (
    type_code text NOT NULL REFERENCES kojo_job_type (type_code)
        ON DELETE CASCADE ON UPDATE CASCADE,
    slot integer NOT NULL,
    free_date_time timestamptz NOT NULL,
    PRIMARY KEY (type_code, slot)
);
CREATE INDEX IF NOT EXISTS kojo_rate_slot_free ON kojo_rate_slot (type_code, free_date_time, slot);

-- kojo schema version 4: rate limits (docs/rate-limits.md; see postgres/schema_4.sql).
ALTER TABLE kojo_job_type ADD COLUMN rate_limit text NOT NULL DEFAULT '';
ALTER TABLE kojo_job_type ADD COLUMN rate_limit_count integer NOT NULL DEFAULT 0;
ALTER TABLE kojo_job_type ADD COLUMN rate_limit_seconds real NOT NULL DEFAULT 0;
ALTER TABLE kojo_job_type ADD COLUMN rate_free_date_time text NOT NULL
    DEFAULT '1970-01-01 00:00:00.000000';
CREATE TABLE IF NOT EXISTS kojo_rate_slot (
    type_code text NOT NULL REFERENCES kojo_job_type (type_code)
        ON DELETE CASCADE ON UPDATE CASCADE,
    slot integer NOT NULL,
    free_date_time text NOT NULL,
    PRIMARY KEY (type_code, slot)
);
CREATE INDEX IF NOT EXISTS kojo_rate_slot_free ON kojo_rate_slot (type_code, free_date_time, slot);

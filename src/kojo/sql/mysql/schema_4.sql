-- kojo schema version 4: rate limits (docs/rate-limits.md; see postgres/schema_4.sql).
ALTER TABLE kojo_job_type ADD COLUMN IF NOT EXISTS rate_limit varchar(255) NOT NULL DEFAULT '';
ALTER TABLE kojo_job_type ADD COLUMN IF NOT EXISTS rate_limit_count integer NOT NULL DEFAULT 0;
ALTER TABLE kojo_job_type ADD COLUMN IF NOT EXISTS rate_limit_seconds double NOT NULL DEFAULT 0;
ALTER TABLE kojo_job_type ADD COLUMN IF NOT EXISTS rate_free_date_time datetime(6) NOT NULL
    DEFAULT '1970-01-01 00:00:00';
CREATE TABLE IF NOT EXISTS kojo_rate_slot (
    type_code varchar(255) NOT NULL,
    slot integer NOT NULL,
    free_date_time datetime(6) NOT NULL,
    PRIMARY KEY (type_code, slot),
    KEY kojo_rate_slot_free (type_code, free_date_time, slot),
    CONSTRAINT kojo_rate_slot_fk FOREIGN KEY (type_code) REFERENCES kojo_job_type (type_code)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin

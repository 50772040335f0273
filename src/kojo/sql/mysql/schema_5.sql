-- kojo schema version 5: a job's timeline (docs/reference/cli.md, "A job's timeline"; see
-- postgres/schema_5.sql for why only the rare transitions have rows).
ALTER TABLE kojo_job ADD COLUMN IF NOT EXISTS started_at_date_time datetime(6);
CREATE TABLE IF NOT EXISTS kojo_job_event (
    kojo_job_event_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kojo_job_id bigint NOT NULL,
    at_date_time datetime(6) NOT NULL,
    transition varchar(64) NOT NULL,
    from_state varchar(64) NOT NULL,
    to_state varchar(64) NOT NULL,
    actor varchar(64) NOT NULL,
    kojo_process_id bigint,
    note text,
    KEY kojo_job_event_job (kojo_job_id, kojo_job_event_id),
    CONSTRAINT kojo_job_event_fk FOREIGN KEY (kojo_job_id) REFERENCES kojo_job (kojo_job_id)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin

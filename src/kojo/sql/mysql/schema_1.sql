-- kojo schema version 1 (MySQL 8 / MariaDB 10.6+, InnoDB). Times are DATETIME(6) in UTC.
-- DDL is not transactional here (each statement commits): every statement is written to
-- be run again (IF NOT EXISTS), so an install cut short is finished by the next one.
-- MySQL has no partial indexes: the unique ones PostgreSQL keeps on a subset of rows are
-- unique indexes on a generated column that is NULL outside that subset (INVISIBLE:
-- not in SELECT *, so rows read the same as on the other databases).
CREATE TABLE IF NOT EXISTS kojo_job_type (
    kojo_job_type_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    type_code varchar(255) NOT NULL UNIQUE CHECK (type_code REGEXP '^[a-z0-9_.-]{1,255}$'),
    name text NOT NULL,
    worker_uri text NOT NULL,
    cron_expression text,
    can_work_in_parallel boolean NOT NULL DEFAULT true,
    default_importance integer NOT NULL DEFAULT 0,
    schedule_limit integer NOT NULL DEFAULT 0 CHECK (schedule_limit >= 0),
    schedule_limit_allowance integer NOT NULL DEFAULT 0 CHECK (schedule_limit_allowance >= 0),
    is_enabled boolean NOT NULL DEFAULT true,
    auto_complete_success boolean NOT NULL DEFAULT true,
    auto_delete_interval_duration varchar(64) NOT NULL DEFAULT 'P1D',
    max_retries integer NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    max_crashes integer NOT NULL DEFAULT 5 CHECK (max_crashes >= 0),
    timeout double CHECK (timeout > 0),
    catch_up varchar(16) NOT NULL DEFAULT 'none' CHECK (catch_up IN ('none', 'latest', 'all')),
    catch_up_window varchar(64) NOT NULL DEFAULT 'PT1H',
    cron_scheduled_until_date_time datetime(6),
    cron_scheduled_expression text,
    is_paused boolean NOT NULL DEFAULT false,
    created_at_date_time datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at_date_time datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per live kojo process. Its id names the lock its anchor session holds
-- (GET_LOCK, mysql_names.py): the lock dies with the session.
CREATE TABLE IF NOT EXISTS kojo_process (
    kojo_process_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    host_name varchar(255) NOT NULL,
    process_id integer NOT NULL,
    parent_process_id integer NOT NULL,
    path text NOT NULL,
    kind varchar(64) NOT NULL,
    started_at_date_time datetime(6) NOT NULL,
    info json NOT NULL DEFAULT ('{}'),
    KEY kojo_process_host (host_name, process_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS kojo_job (
    kojo_job_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    type_code varchar(255) NOT NULL,
    name text NOT NULL,
    priority integer NOT NULL,
    importance integer NOT NULL,
    work_at_date_time datetime(6) NOT NULL,
    next_state_request varchar(64) NOT NULL,
    assigned_state varchar(64) NOT NULL,
    previous_state varchar(64) NOT NULL,
    worker_uri text NOT NULL,
    can_work_in_parallel boolean NOT NULL,
    last_transition_date_time datetime(6) NOT NULL,
    times_worked integer NOT NULL DEFAULT 0,
    times_retried integer NOT NULL DEFAULT 0,
    times_held integer NOT NULL DEFAULT 0,
    times_crashed integer NOT NULL DEFAULT 0,
    times_panicked integer NOT NULL DEFAULT 0,
    created_at_date_time datetime(6) NOT NULL,
    completed_at_date_time datetime(6),
    delete_after_date_time datetime(6),
    payload json,
    kojo_process_id bigint,
    cron_fire_date_time datetime(6),
    last_error text,
    -- can_work_in_parallel = false: at most one working job of a type (kojo_job_serial_working).
    serial_working_type varchar(255) AS (CASE WHEN assigned_state = 'working'
        AND NOT can_work_in_parallel THEN type_code END) VIRTUAL INVISIBLE,
    CONSTRAINT kojo_job_type_fk FOREIGN KEY (type_code) REFERENCES kojo_job_type (type_code)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX IF NOT EXISTS kojo_job_ready ON kojo_job (priority DESC, work_at_date_time, kojo_job_id);
CREATE UNIQUE INDEX IF NOT EXISTS kojo_job_serial_working ON kojo_job (serial_working_type);
-- Exactly one cron-made job per type and due minute (NULLs never collide).
CREATE UNIQUE INDEX IF NOT EXISTS kojo_job_cron_fire ON kojo_job (type_code, cron_fire_date_time);
CREATE INDEX IF NOT EXISTS kojo_job_owner ON kojo_job (kojo_process_id, assigned_state);
CREATE INDEX IF NOT EXISTS kojo_job_type_state ON kojo_job (type_code, assigned_state, next_state_request);
CREATE INDEX IF NOT EXISTS kojo_job_pending ON kojo_job (next_state_request, work_at_date_time);
CREATE INDEX IF NOT EXISTS kojo_job_delete_after ON kojo_job (delete_after_date_time);

-- Mutexes and semaphores: slot rows are never deleted, so a fencing token only grows.
CREATE TABLE IF NOT EXISTS kojo_semaphore (
    name varchar(255) NOT NULL PRIMARY KEY CHECK (char_length(name) BETWEEN 1 AND 255),
    slots integer NOT NULL CHECK (slots BETWEEN 1 AND 10000)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE IF NOT EXISTS kojo_semaphore_slot (
    name varchar(255) NOT NULL,
    slot integer NOT NULL,
    last_token bigint NOT NULL DEFAULT 0,
    token bigint,
    kojo_process_id bigint,
    kojo_job_id bigint,
    acquired_at_date_time datetime(6),
    PRIMARY KEY (name, slot),
    KEY kojo_semaphore_slot_holder (kojo_process_id),
    CONSTRAINT kojo_semaphore_slot_fk FOREIGN KEY (name) REFERENCES kojo_semaphore (name)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE IF NOT EXISTS kojo_semaphore_waiter (
    kojo_semaphore_waiter_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name varchar(255) NOT NULL,
    kojo_process_id bigint NOT NULL,
    kojo_job_id bigint,
    -- where to wake this waiter: a kojo_ring name (mysql_wakeups.py)
    bell varchar(255) NOT NULL,
    since_date_time datetime(6) NOT NULL,
    KEY kojo_semaphore_waiter_name (name, kojo_semaphore_waiter_id),
    KEY kojo_semaphore_waiter_owner (kojo_process_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Published messages (docs/ipc.md): subscribers read them by id when woken.
CREATE TABLE IF NOT EXISTS kojo_message (
    kojo_message_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    channel varchar(255) NOT NULL,
    payload longtext NOT NULL,
    kojo_process_id bigint,
    created_at_date_time datetime(6) NOT NULL,
    KEY kojo_message_channel (channel, kojo_message_id),
    KEY kojo_message_created (created_at_date_time)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- MySQL's own: wake-ups (no LISTEN/NOTIFY) and lock waiters' rings (mysql_wakeups.py).
CREATE TABLE IF NOT EXISTS kojo_wakeup (
    kojo_wakeup_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    topic varchar(64) NOT NULL,
    data text NOT NULL,
    created_at_date_time datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY kojo_wakeup_created (created_at_date_time)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE IF NOT EXISTS kojo_ring (
    kojo_ring_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    bell varchar(255) NOT NULL,
    KEY kojo_ring_bell (bell)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row that publishers lock before inserting a message: ids are then handed out in
-- commit order (auto-increment ids are not), so a subscriber that reads past the last id
-- it saw misses none (message_publish).
CREATE TABLE IF NOT EXISTS kojo_message_order (
    id integer NOT NULL PRIMARY KEY
) ENGINE = InnoDB;
INSERT IGNORE INTO kojo_message_order (id) VALUES (1)

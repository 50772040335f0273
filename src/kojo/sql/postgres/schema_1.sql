-- kojo schema version 1 (PostgreSQL). Times are timestamptz in UTC.
CREATE TABLE IF NOT EXISTS kojo_job_type (
    kojo_job_type_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type_code text NOT NULL UNIQUE CHECK (type_code ~ '^[a-z0-9_.-]{1,255}$'),
    name text NOT NULL,
    worker_uri text NOT NULL,
    cron_expression text,
    can_work_in_parallel boolean NOT NULL DEFAULT true,
    default_importance integer NOT NULL DEFAULT 0,
    schedule_limit integer NOT NULL DEFAULT 0 CHECK (schedule_limit >= 0),
    schedule_limit_allowance integer NOT NULL DEFAULT 0 CHECK (schedule_limit_allowance >= 0),
    is_enabled boolean NOT NULL DEFAULT true,
    auto_complete_success boolean NOT NULL DEFAULT true,
    auto_delete_interval_duration text NOT NULL DEFAULT 'P1D',
    max_retries integer NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    max_crashes integer NOT NULL DEFAULT 5 CHECK (max_crashes >= 0),
    timeout double precision CHECK (timeout > 0),
    catch_up text NOT NULL DEFAULT 'none' CHECK (catch_up IN ('none', 'latest', 'all')),
    catch_up_window text NOT NULL DEFAULT 'PT1H',
    -- Cron bookkeeping (cron_scheduler.py): every due minute up to this one has had its
    -- job made (or was skipped), for this normalized expression. Survives job deletion.
    cron_scheduled_until_date_time timestamptz,
    cron_scheduled_expression text,
    is_paused boolean NOT NULL DEFAULT false,
    created_at_date_time timestamptz NOT NULL DEFAULT now(),
    updated_at_date_time timestamptz NOT NULL DEFAULT now()
);

-- One row per live kojo process (and rows of dead ones until reaped). The row's
-- id is also the key of the session advisory lock the process holds on its
-- anchor connection: the lock dies with the process, which is how every other
-- process knows it is gone.
CREATE TABLE IF NOT EXISTS kojo_process (
    kojo_process_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_name text NOT NULL,
    process_id integer NOT NULL,
    parent_process_id integer NOT NULL,
    path text NOT NULL,
    kind text NOT NULL,
    started_at_date_time timestamptz NOT NULL,
    info jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE IF NOT EXISTS kojo_job (
    kojo_job_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type_code text NOT NULL REFERENCES kojo_job_type (type_code) ON DELETE CASCADE ON UPDATE CASCADE,
    name text NOT NULL,
    priority integer NOT NULL,
    importance integer NOT NULL,
    work_at_date_time timestamptz NOT NULL,
    next_state_request text NOT NULL,
    assigned_state text NOT NULL,
    previous_state text NOT NULL,
    worker_uri text NOT NULL,
    can_work_in_parallel boolean NOT NULL,
    last_transition_date_time timestamptz NOT NULL,
    times_worked integer NOT NULL DEFAULT 0,
    times_retried integer NOT NULL DEFAULT 0,
    times_held integer NOT NULL DEFAULT 0,
    times_crashed integer NOT NULL DEFAULT 0,
    times_panicked integer NOT NULL DEFAULT 0,
    created_at_date_time timestamptz NOT NULL,
    completed_at_date_time timestamptz,
    delete_after_date_time timestamptz,
    payload jsonb,
    kojo_process_id bigint,
    cron_fire_date_time timestamptz,
    last_error text
);

-- The claim path: only runnable rows, in selection order.
CREATE INDEX IF NOT EXISTS kojo_job_ready ON kojo_job (priority DESC, work_at_date_time, kojo_job_id)
    WHERE next_state_request = 'working' AND assigned_state IN ('waiting', 'crashed');
-- can_work_in_parallel = false: at most one working job of a type, enforced by the database.
CREATE UNIQUE INDEX IF NOT EXISTS kojo_job_serial_working ON kojo_job (type_code)
    WHERE assigned_state = 'working' AND NOT can_work_in_parallel;
-- Exactly one cron-made job per type and due minute.
CREATE UNIQUE INDEX IF NOT EXISTS kojo_job_cron_fire ON kojo_job (type_code, cron_fire_date_time)
    WHERE cron_fire_date_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS kojo_job_owner ON kojo_job (kojo_process_id)
    WHERE assigned_state = 'working';
CREATE INDEX IF NOT EXISTS kojo_job_type_state ON kojo_job (type_code, assigned_state, next_state_request);
CREATE INDEX IF NOT EXISTS kojo_job_pending ON kojo_job (work_at_date_time)
    WHERE next_state_request = 'schedule_limit_check';
CREATE INDEX IF NOT EXISTS kojo_job_delete_after ON kojo_job (delete_after_date_time)
    WHERE delete_after_date_time IS NOT NULL;

-- Mutexes and semaphores: one row per name, one row per slot. Slot rows are
-- never deleted, so a slot's fencing token only ever grows.
CREATE TABLE IF NOT EXISTS kojo_semaphore (
    name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 255),
    slots integer NOT NULL CHECK (slots BETWEEN 1 AND 10000)
);
CREATE TABLE IF NOT EXISTS kojo_semaphore_slot (
    name text NOT NULL REFERENCES kojo_semaphore (name) ON DELETE CASCADE,
    slot integer NOT NULL,
    last_token bigint NOT NULL DEFAULT 0,
    token bigint,
    kojo_process_id bigint,
    kojo_job_id bigint,
    acquired_at_date_time timestamptz,
    PRIMARY KEY (name, slot)
);
CREATE INDEX IF NOT EXISTS kojo_semaphore_slot_holder ON kojo_semaphore_slot (kojo_process_id)
    WHERE kojo_process_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS kojo_semaphore_waiter (
    kojo_semaphore_waiter_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    kojo_process_id bigint NOT NULL,
    kojo_job_id bigint,
    -- where to wake this waiter: a datagram socket (SQLite) or a LISTEN channel
    bell text NOT NULL,
    since_date_time timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS kojo_semaphore_waiter_name ON kojo_semaphore_waiter (name);

-- Published messages (docs/ipc.md): SQLite subscribers read them by id;
-- PostgreSQL subscribers get them inside NOTIFY and read the table only for
-- large messages and after a reconnect. `json`, not `jsonb`: a message comes
-- back exactly as it was sent (key order, \u0000), from the table or NOTIFY.
CREATE TABLE IF NOT EXISTS kojo_message (
    kojo_message_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel text NOT NULL,
    payload json NOT NULL,
    kojo_process_id bigint,
    created_at_date_time timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS kojo_message_channel ON kojo_message (channel, kojo_message_id);

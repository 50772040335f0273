-- kojo schema version 6: running totals of finished jobs, for /metrics and the dashboard's
-- charts (docs/dashboard.md). The process that finishes a job adds, in the same
-- transaction, to its own row of the minute (writer: its pid, so that job processes never
-- wait on each other's rows): how many finished, and for those that ran (timed) the sums
-- and histogram buckets of their duration (finish - start) and wait (start - work_at).
-- A bucket column counts the values above the previous bound up to its own (5ms: up to
-- 0.005 s); above 1h: timed minus the buckets. The maintainer folds the rows older than an
-- hour into one row per type and outcome (minute 0, writer 0); nothing else ever lowers a
-- counter (purging or deleting jobs leaves them).
CREATE TABLE IF NOT EXISTS kojo_job_tally (
    minute bigint NOT NULL,
    type_code text NOT NULL,
    outcome text NOT NULL,
    writer bigint NOT NULL,
    finished bigint NOT NULL DEFAULT 0,
    timed bigint NOT NULL DEFAULT 0,
    duration_sum double precision NOT NULL DEFAULT 0,
    wait_sum double precision NOT NULL DEFAULT 0,
    duration_5ms bigint NOT NULL DEFAULT 0,
    duration_10ms bigint NOT NULL DEFAULT 0,
    duration_25ms bigint NOT NULL DEFAULT 0,
    duration_50ms bigint NOT NULL DEFAULT 0,
    duration_100ms bigint NOT NULL DEFAULT 0,
    duration_250ms bigint NOT NULL DEFAULT 0,
    duration_500ms bigint NOT NULL DEFAULT 0,
    duration_1s bigint NOT NULL DEFAULT 0,
    duration_2_5s bigint NOT NULL DEFAULT 0,
    duration_5s bigint NOT NULL DEFAULT 0,
    duration_10s bigint NOT NULL DEFAULT 0,
    duration_30s bigint NOT NULL DEFAULT 0,
    duration_1m bigint NOT NULL DEFAULT 0,
    duration_5m bigint NOT NULL DEFAULT 0,
    duration_15m bigint NOT NULL DEFAULT 0,
    duration_1h bigint NOT NULL DEFAULT 0,
    wait_5ms bigint NOT NULL DEFAULT 0,
    wait_10ms bigint NOT NULL DEFAULT 0,
    wait_25ms bigint NOT NULL DEFAULT 0,
    wait_50ms bigint NOT NULL DEFAULT 0,
    wait_100ms bigint NOT NULL DEFAULT 0,
    wait_250ms bigint NOT NULL DEFAULT 0,
    wait_500ms bigint NOT NULL DEFAULT 0,
    wait_1s bigint NOT NULL DEFAULT 0,
    wait_2_5s bigint NOT NULL DEFAULT 0,
    wait_5s bigint NOT NULL DEFAULT 0,
    wait_10s bigint NOT NULL DEFAULT 0,
    wait_30s bigint NOT NULL DEFAULT 0,
    wait_1m bigint NOT NULL DEFAULT 0,
    wait_5m bigint NOT NULL DEFAULT 0,
    wait_15m bigint NOT NULL DEFAULT 0,
    wait_1h bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, type_code, outcome, writer)
);

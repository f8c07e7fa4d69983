-- Runs, their tokens and their events: the same tables as the SQLite store's, with
-- the times stall detection and retention compare against kept as generated columns,
-- so that several hubs sweeping find their runs through an index.

CREATE TABLE runs (
    ord BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    parent TEXT,
    heartbeat_timeout_s DOUBLE PRECISION NOT NULL,
    ttl_s DOUBLE PRECISION NOT NULL,
    track TEXT,
    meta TEXT,
    created_us BIGINT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'running',
    last_event_us BIGINT NOT NULL,
    last_producer_us BIGINT NOT NULL,
    state TEXT NOT NULL,
    -- When the run turns stalled if its producer stays silent.
    silent_us BIGINT GENERATED ALWAYS AS
        (last_producer_us + (heartbeat_timeout_s * 1000000)::BIGINT) STORED,
    -- When retention deletes it.
    expires_us BIGINT GENERATED ALWAYS AS
        (last_event_us + (ttl_s * 1000000)::BIGINT) STORED
);
CREATE INDEX runs_newest ON runs (created_us DESC, ord DESC);
CREATE INDEX runs_status ON runs (status, created_us DESC);
CREATE INDEX runs_parent ON runs (parent) WHERE parent IS NOT NULL;
CREATE INDEX runs_silent ON runs (silent_us) WHERE status = 'running';
CREATE INDEX runs_expiry ON runs (expires_us);

CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    scope TEXT NOT NULL
);
CREATE INDEX tokens_run ON tokens (run_id);

CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    event_id TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE UNIQUE INDEX events_idempotency ON events (run_id, event_id)
    WHERE event_id IS NOT NULL;

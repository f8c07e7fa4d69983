-- Runs, their tokens and their events, as the first hub wrote them. Retention counted
-- from `last_event_us`; 0002 renames it.
CREATE TABLE runs (
    ord INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    parent TEXT,
    heartbeat_timeout_s REAL NOT NULL,
    ttl_s REAL NOT NULL,
    track TEXT,
    meta TEXT,
    created_us INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'running',
    last_event_us INTEGER NOT NULL,
    last_producer_us INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX runs_status ON runs (status, last_producer_us);
CREATE INDEX runs_parent ON runs (parent);
CREATE INDEX runs_expiry ON runs (last_event_us);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    scope TEXT NOT NULL
);
CREATE INDEX tokens_run ON tokens (run_id);
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event_id TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX events_idempotency ON events (run_id, event_id) WHERE event_id IS NOT NULL;

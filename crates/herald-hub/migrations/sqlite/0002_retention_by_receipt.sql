-- Retention counts from when the hub received a run's last event, by the hub's own
-- clock. It counted from the later of that and the events' own times, which producers
-- choose, so a run stamped 9999-12-31 was never deleted. The column keeps its values
-- under its new name (its index follows the rename); a time still ahead of the clock
-- is brought back to it, so such a run is deleted its ttl_s after this migration.
ALTER TABLE runs RENAME COLUMN last_event_us TO last_received_us;
UPDATE runs SET last_received_us = CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
    WHERE last_received_us > CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER);

-- Retention counts from when the hub received a run's last event, by the hub's own
-- clock. It counted from the later of that and the events' own times, which producers
-- choose, so a run stamped 9999-12-31 was never deleted. The column keeps its values
-- under its new name; a time still ahead of the clock is brought back to it, so such a
-- run is deleted its ttl_s after this migration. (`expires_us`, generated from the
-- column, follows the rename and the update.)
ALTER TABLE runs RENAME COLUMN last_event_us TO last_received_us;
UPDATE runs SET last_received_us = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
    WHERE last_received_us > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT;

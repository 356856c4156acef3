-- The audit staging table took the trace staging table's _summarize and _rollup flags, always false:
-- no audit view reads them. The sink now sends only the flags of the views a staging table feeds
-- (SinkTable.guards in sinks/writer.py), so they go (and 0012 no longer adds _rollup there: a
-- database migrated before has it, one migrated now never had it).

ALTER TABLE {db}.audit_events_in DROP COLUMN IF EXISTS _summarize, DROP COLUMN IF EXISTS _rollup

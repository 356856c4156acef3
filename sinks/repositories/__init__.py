"""One repository per ClickHouse table: SQL in, domain objects (dicts in the API's shape) out."""

"""ClickHouse access: connection, migrations, repositories and the sink writer."""

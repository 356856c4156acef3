"""The aiohttp read/write API: one route module per surface over one query layer."""

"""Bulk exports: CSV and JSON writers, and responses streamed chunk by chunk."""

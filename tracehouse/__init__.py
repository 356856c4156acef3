"""tracehouse: an event-sourced stream processor for agent traces and audit logs."""

__version__ = "0.1.0"

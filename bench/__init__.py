"""``make bench``: figures for the README, printed, never asserted."""

"""Response shapes: pure functions from stored rows to what each seed's clients expect."""

"""Avro schemas, the event model at the HTTP edge, the codec and the producer client."""

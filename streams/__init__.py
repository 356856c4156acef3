"""The Faust app: topics, agents and the embedded-broker hygiene."""

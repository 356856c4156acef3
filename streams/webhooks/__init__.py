"""Webhook dispatch: subscriptions read from their topic, events fanned out into deliveries, and
deliveries attempted, retried through one topic per tier, and dead-lettered."""

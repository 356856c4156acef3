"""How long an idle consumer of the embedded broker waits between fetches (streams/embedded/fetch_throttle.py)."""

from types import SimpleNamespace

from streams.embedded import fetch_throttle


def fetcher(client_id: str) -> SimpleNamespace:
    return SimpleNamespace(_client=SimpleNamespace(_client_id=client_id))


def test_a_relaxed_prefix_waits_longer_and_every_other_consumer_the_minimum(monkeypatch):
    monkeypatch.setattr(fetch_throttle, "_relaxed", {})
    fetch_throttle.relax("tracehouse-rollups.", 1.0)
    assert fetch_throttle._wait_of(fetcher("tracehouse-rollups.12.ab12cd34"), 0.05) == 1.0  # type: ignore[arg-type]
    assert fetch_throttle._wait_of(fetcher("tracehouse-sink.12.ab12cd34"), 0.05) == 0.05  # type: ignore[arg-type]
    assert fetch_throttle._wait_of(SimpleNamespace(), 0.05) == 0.05  # type: ignore[arg-type]

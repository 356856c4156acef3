from pathlib import Path

import pytest

from tracehouse.settings import Settings


def test_defaults_match_design():
    s = Settings.from_env({})
    assert (s.http_host, s.http_port, s.kafka_port) == ("127.0.0.1", 8080, 9092)
    assert s.data_dir == Path("./.tracehouse")
    assert s.embedded_kafka and s.embedded_clickhouse
    assert s.bootstrap_servers == "127.0.0.1:9092"


def test_env_vars_are_parsed_by_type():
    s = Settings.from_env({"TRACEHOUSE_HTTP_PORT": "9000", "TRACEHOUSE_DATA_DIR": "/x",
                           "TRACEHOUSE_KAFKA_BOOTSTRAP": "k:9092", "TRACEHOUSE_SINK_BATCH_SECONDS": "0.5",
                           "TRACEHOUSE_CLICKHOUSE_URL": "http://ch:8123"})
    assert s.http_port == 9000 and s.data_dir == Path("/x") and s.sink_batch_seconds == 0.5
    assert not s.embedded_kafka and s.bootstrap_servers == "k:9092"
    assert not s.embedded_clickhouse


def test_overrides_win_and_empty_values_mean_default():
    s = Settings.from_env({"TRACEHOUSE_HTTP_PORT": "9000", "TRACEHOUSE_ADMIN_KEY": ""}, http_port=7000)
    assert s.http_port == 7000 and s.admin_key is None


@pytest.mark.parametrize("env", [{"TRACEHOUSE_HTTP_PORT": "abc"}, {"TRACEHOUSE_HTTP_PORT": "0"},
                                 {"TRACEHOUSE_PROCESSING_GUARANTEE": "maybe"}])
def test_invalid_values_name_the_variable(env):
    with pytest.raises(ValueError, match=next(iter(env))):
        Settings.from_env(env)


def test_exactly_once_needs_a_real_kafka():
    with pytest.raises(ValueError, match="TRACEHOUSE_PROCESSING_GUARANTEE.*noida-db"):
        Settings.from_env({"TRACEHOUSE_PROCESSING_GUARANTEE": "exactly_once"})
    s = Settings.from_env({"TRACEHOUSE_PROCESSING_GUARANTEE": "exactly_once", "TRACEHOUSE_KAFKA_BOOTSTRAP": "k:9092"})
    assert s.processing_guarantee == "exactly_once"


def test_chaining_is_on_by_default():
    assert Settings.from_env({}).chain_events
    assert not Settings.from_env({"TRACEHOUSE_CHAIN_EVENTS": "false"}).chain_events

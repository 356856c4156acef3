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
    with pytest.raises(ValueError, match="TRACEHOUSE_PROCESSING_GUARANTEE.*the embedded broker"):
        Settings.from_env({"TRACEHOUSE_PROCESSING_GUARANTEE": "exactly_once"})
    s = Settings.from_env({"TRACEHOUSE_PROCESSING_GUARANTEE": "exactly_once", "TRACEHOUSE_KAFKA_BOOTSTRAP": "k:9092"})
    assert s.processing_guarantee == "exactly_once"


def test_chaining_is_on_by_default():
    assert Settings.from_env({}).chain_events
    assert not Settings.from_env({"TRACEHOUSE_CHAIN_EVENTS": "false"}).chain_events


@pytest.mark.parametrize("raw", ["true", "TRUE", "True", "1", "yes", "YES", "on", "On", " true ", "\tyes\n"])
def test_every_true_spelling_is_accepted(raw):
    assert Settings.from_env({"TRACEHOUSE_CHAIN_EVENTS": raw}).chain_events is True


@pytest.mark.parametrize("raw", ["false", "FALSE", "False", "0", "no", "NO", "off", "Off", " false ", "\toff\n"])
def test_every_false_spelling_is_accepted(raw):
    assert Settings.from_env({"TRACEHOUSE_CHAIN_EVENTS": raw}).chain_events is False


@pytest.mark.parametrize("raw", ["ture", "t", "y", "2", "-1", "enabled", "true!", "o n"])
def test_a_misspelled_boolean_stops_start_up_naming_the_variable(raw):
    with pytest.raises(ValueError) as exc:
        Settings.from_env({"TRACEHOUSE_CHAIN_EVENTS": raw})
    assert str(exc.value) == f"TRACEHOUSE_CHAIN_EVENTS={raw!r}: expected true/false/1/0/yes/no/on/off"


@pytest.mark.parametrize(("raw", "stored"), [("debug", "DEBUG"), ("Info", "INFO"), ("WARNING", "WARNING"),
                                             (" error ", "ERROR"), ("critical", "CRITICAL")])
def test_log_level_is_case_insensitive_and_stored_upper_case(raw, stored):
    assert Settings.from_env({"TRACEHOUSE_LOG_LEVEL": raw}).log_level == stored


@pytest.mark.parametrize("raw", ["verbose", "WARN", "FATAL", "10", "INFO,DEBUG"])
def test_an_unknown_log_level_names_the_variable_and_the_levels(raw):
    with pytest.raises(ValueError) as exc:
        Settings.from_env({"TRACEHOUSE_LOG_LEVEL": raw})
    assert str(exc.value) == f"TRACEHOUSE_LOG_LEVEL={raw!r}: expected DEBUG/INFO/WARNING/ERROR/CRITICAL"


@pytest.mark.parametrize("raw", ["maybe", "at-least-once", "exactly once", "once"])
def test_an_unknown_processing_guarantee_names_the_variable_and_the_guarantees(raw):
    with pytest.raises(ValueError) as exc:
        Settings.from_env({"TRACEHOUSE_PROCESSING_GUARANTEE": raw})
    assert str(exc.value) == f"TRACEHOUSE_PROCESSING_GUARANTEE={raw!r}: expected at_least_once/exactly_once"


def test_processing_guarantee_is_parsed_at_parse_time_not_validate():
    s = Settings.from_env({"TRACEHOUSE_PROCESSING_GUARANTEE": " AT_LEAST_ONCE "})
    assert s.processing_guarantee == "at_least_once"


@pytest.mark.parametrize(("field", "value"), [("log_level", "debug"), ("processing_guarantee", "maybe")])
def test_overrides_are_checked_against_the_same_values(field, value):
    with pytest.raises(ValueError, match=f"TRACEHOUSE_{field.upper()}={value!r}: expected "):
        Settings.from_env({}, **{field: value})


@pytest.mark.parametrize("raw", ["inf", "-inf", "Infinity", "nan", "NaN", "1e400"])
def test_float_settings_refuse_inf_and_nan(raw):
    with pytest.raises(ValueError) as exc:
        Settings.from_env({"TRACEHOUSE_SINK_BATCH_SECONDS": raw})
    assert str(exc.value) == f"TRACEHOUSE_SINK_BATCH_SECONDS={raw!r}: expected a finite number"


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_float_overrides_refuse_inf_and_nan(value):
    with pytest.raises(ValueError, match="TRACEHOUSE_KEY_CACHE_SECONDS=.*expected a finite number"):
        Settings.from_env({}, key_cache_seconds=value)


@pytest.mark.parametrize(("var", "raw"), [("TRACEHOUSE_HTTP_PORT", "80x"), ("TRACEHOUSE_HTTP_PORT", "8.5"),
                                          ("TRACEHOUSE_SEND_TIMEOUT_SECONDS", "3s"),
                                          ("TRACEHOUSE_INGEST_PROCESSES", "two")])
def test_junk_numbers_name_the_variable(var, raw):
    with pytest.raises(ValueError, match=f"^{var}={raw!r}: "):
        Settings.from_env({var: raw})


def test_webhook_settings_have_their_defaults():
    s = Settings.from_env({})
    assert s.webhook_retry_schedule == "1m,5m,30m" and s.webhook_retry_delays == (60.0, 300.0, 1800.0)
    assert s.webhook_allow_private_networks is False
    assert (s.webhook_timeout_seconds, s.webhook_concurrency_per_endpoint) == (10.0, 4)
    assert (s.webhook_breaker_failures, s.webhook_breaker_cooldown_seconds) == (5, 30.0)


def test_webhook_settings_are_read_from_the_environment():
    s = Settings.from_env({"TRACEHOUSE_WEBHOOK_RETRY_SCHEDULE": "200ms,400ms",
                           "TRACEHOUSE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
                           "TRACEHOUSE_WEBHOOK_TIMEOUT_SECONDS": "2.5",
                           "TRACEHOUSE_WEBHOOK_CONCURRENCY_PER_ENDPOINT": "8",
                           "TRACEHOUSE_WEBHOOK_BREAKER_FAILURES": "3",
                           "TRACEHOUSE_WEBHOOK_BREAKER_COOLDOWN_SECONDS": "0.5"})
    assert s.webhook_retry_delays == (0.2, 0.4) and s.webhook_allow_private_networks
    assert (s.webhook_timeout_seconds, s.webhook_concurrency_per_endpoint) == (2.5, 8)
    assert (s.webhook_breaker_failures, s.webhook_breaker_cooldown_seconds) == (3, 0.5)


@pytest.mark.parametrize(("raw", "why"), [("1m,5x", "'5x' is not a duration"), ("0s", "must be above 0"),
                                          ("25h", "at most 24h"), (",".join(["1s"] * 11), "expected 1 to 10"),
                                          ("1m,,5m", "'' is not a duration")])
def test_an_invalid_webhook_retry_schedule_stops_start_up(raw, why):
    with pytest.raises(ValueError) as exc:
        Settings.from_env({"TRACEHOUSE_WEBHOOK_RETRY_SCHEDULE": raw})
    assert str(exc.value).startswith(f"TRACEHOUSE_WEBHOOK_RETRY_SCHEDULE={raw!r}: ") and why in str(exc.value)


@pytest.mark.parametrize("name", ["WEBHOOK_TIMEOUT_SECONDS", "WEBHOOK_CONCURRENCY_PER_ENDPOINT",
                                  "WEBHOOK_BREAKER_FAILURES", "WEBHOOK_BREAKER_COOLDOWN_SECONDS"])
def test_webhook_limits_must_be_positive(name):
    with pytest.raises(ValueError, match=f"TRACEHOUSE_{name} must be positive"):
        Settings.from_env({f"TRACEHOUSE_{name}": "0"})

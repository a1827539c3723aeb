"""The learner's input consumer reports librdkafka's errors: transient ones as warnings (librdkafka
retries them), a fatal one by stopping."""

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from driftline._fetch import _report


def test_a_transient_error_is_logged_with_what_librdkafka_does_about_it(caplog):
    with caplog.at_level(logging.WARNING, logger="driftline.kafka"):
        _report(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert "1/1 brokers are down" in caplog.text and "retries" in caplog.text


def test_the_end_of_a_partition_is_not_an_error(caplog):
    with caplog.at_level(logging.DEBUG, logger="driftline.kafka"):
        _report(KafkaError(KafkaError._PARTITION_EOF))
    assert caplog.text == ""


def test_a_fatal_error_stops_the_caller():
    with pytest.raises(KafkaException):
        _report(KafkaError(KafkaError._FATAL, "fenced", fatal=True))

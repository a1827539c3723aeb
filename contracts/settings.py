"""Connection settings: the one place every command reads Kafka from.

Every client driftline makes (kafka-python producers, consumers and admin
clients, and aiokafka under faust) is configured from :class:`KafkaSettings`,
which is read from the environment once:

=================================  =============================================
``DRIFTLINE_BOOTSTRAP_SERVERS``    ``host:port[,host:port…]`` (``127.0.0.1:9092``)
``DRIFTLINE_SECURITY_PROTOCOL``    ``PLAINTEXT`` | ``SSL`` | ``SASL_PLAINTEXT`` | ``SASL_SSL``
``DRIFTLINE_SASL_MECHANISM``       ``PLAIN`` | ``SCRAM-SHA-256`` | ``SCRAM-SHA-512``
``DRIFTLINE_SASL_USERNAME``        SASL user
``DRIFTLINE_SASL_PASSWORD``        SASL password (kept out of ``repr``)
``DRIFTLINE_SSL_CAFILE``           CA bundle (PEM)
``DRIFTLINE_SSL_CERTFILE``         client certificate (PEM)
``DRIFTLINE_SSL_KEYFILE``          client key (PEM)
=================================  =============================================

>>> s = KafkaSettings.from_env({"DRIFTLINE_BOOTSTRAP_SERVERS": "a:1,b:2"})
>>> s.bootstrap_list
['a:1', 'b:2']
>>> s.faust_broker
'kafka://a:1;kafka://b:2'
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["KafkaSettings", "DEFAULT_BOOTSTRAP", "FETCH_MAX_WAIT_MS"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
ENV_PREFIX = "DRIFTLINE_"
# How long a consumer lets the broker hold a fetch that has nothing yet (faust sets 1,500 ms,
# kafka-python 500 ms): the processors' worker saw a fetch held for the whole wait while records
# were arriving, which stalled it at half load (README, Benchmarks). The learner's fetches wait this
# long, and the worker's fetch loop waits this long for one ``getmany``; the worker's fetches
# themselves wait for 64 KiB or 10 ms (``processors.app.WORKER_FETCH_MIN_BYTES``, ``_MAX_WAIT_MS``).
FETCH_MAX_WAIT_MS = 50


def _pace_metadata_wakeups() -> None:
    """Stop kafka-python's producer from spinning while no broker answers.

    In kafka-python 3.0.12, while a partition with queued records has no known leader, the
    producer's sender asks for a metadata update on every loop, and each ask wakes its own
    selector, so the next poll returns at once: the learner's producer took a whole core through
    a Kafka outage (``tests/chaos/test_kafka_outage.py``). An ask while the same update is still
    pending now only returns the pending future; the refresh loop keeps its retry back-off, and
    a new update after the pending one completes wakes it as before.
    """
    from kafka.cluster import ClusterMetadata

    if getattr(ClusterMetadata, "_driftline_paced", False):
        return
    base = ClusterMetadata.request_update

    def request_update(self):
        with self._lock:
            pending = self._future
            if (self._need_update and pending is not None and not pending.is_done
                    and self._refresh_loop_future is not None):
                return pending
        return base(self)

    ClusterMetadata.request_update = request_update
    ClusterMetadata._driftline_paced = True


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster, and with which credentials."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = Field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "KafkaSettings":
        env = os.environ if environ is None else environ
        values = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw not in (None, ""):
                values[name] = raw
        return cls(**values)

    @property
    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def kafka_python(self) -> dict:
        """Keyword arguments for any kafka-python client (and its outage fix, see below)."""
        _pace_metadata_wakeups()
        return {"bootstrap_servers": self.bootstrap_list,
                **self._security("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                 "sasl_plain_password", "ssl_cafile", "ssl_certfile", "ssl_keyfile")}

    def _security(self, protocol: str, mechanism: str, username: str, password: str, cafile: str, certfile: str,
                  keyfile: str) -> dict:
        """The security settings, under one client's names for each: the protocol always, the SASL
        credentials with a mechanism, each TLS file when it is set."""
        sasl = bool(self.sasl_mechanism)
        secret = self.sasl_password.get_secret_value() if self.sasl_password else None
        pairs = [(protocol, self.security_protocol, True), (mechanism, self.sasl_mechanism, sasl),
                 (username, self.sasl_username, sasl), (password, secret, sasl),
                 (cafile, self.ssl_cafile, bool(self.ssl_cafile)), (certfile, self.ssl_certfile, bool(self.ssl_certfile)),
                 (keyfile, self.ssl_keyfile, bool(self.ssl_keyfile))]
        return {name: value for name, value, wanted in pairs if wanted}

    def librdkafka(self) -> dict:
        """The same settings in librdkafka's names, for confluent-kafka (the learner's consumer and producer).

        >>> KafkaSettings(bootstrap_servers="a:9092, b:9092", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
        ...               sasl_username="u", sasl_password="p", ssl_cafile="/ca.pem").librdkafka()
        ... # doctest: +NORMALIZE_WHITESPACE
        {'bootstrap.servers': 'a:9092,b:9092', 'security.protocol': 'SASL_SSL', 'sasl.mechanism': 'PLAIN',
         'sasl.username': 'u', 'sasl.password': 'p', 'ssl.ca.location': '/ca.pem'}
        """
        return {"bootstrap.servers": ",".join(self.bootstrap_list),
                **self._security("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
                                 "ssl.ca.location", "ssl.certificate.location", "ssl.key.location")}

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{s}" for s in self.bootstrap_list)

    def faust_credentials(self):
        """``broker_credentials`` for a faust app (aiokafka underneath), or None."""
        if self.security_protocol == "PLAINTEXT":
            return None
        import faust  # local import: only the processors need faust

        context = None
        if self.security_protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if self.sasl_mechanism:
            password = self.sasl_password.get_secret_value() if self.sasl_password else ""
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=password,
                mechanism=self.sasl_mechanism,
                ssl_context=context,
            )
        return faust.SSLCredentials(context)

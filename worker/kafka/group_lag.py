"""The whole consumer group's lag, from its committed offsets, for every input partition.

``biomarker_consumer_lag`` covers only the partitions a member owns, while it owns them; a
partition no member serves (members crashed, stuck in a rebalance, or too few) shows up nowhere.
:class:`GroupLagCollector` asks the brokers instead, on its own thread, every ``interval_s``:
every partition of the input topics, the group's committed offsets and the log end offsets, and
sets ``biomarker_group_lag{topic,partition}`` = log end - committed. Every member exports the
same series, so dashboards take ``max by (topic, partition)``.

Choices:

- Nothing committed yet for a partition: the lag counts from where the group would start
  reading, the log start (low watermark) with ``auto_offset_reset=earliest``; with ``latest``
  the group would skip what is there, so the lag is 0.
- Log end: the last stable offset for a ``read_committed`` consumer (the confluent runtime's
  default), the high watermark otherwise, so open transactions upstream are not counted as lag.
- A round that fails removes this member's series (a stale value would win ``max by``), logs a
  one-line warning and the next round tries again; a partition the brokers answer with an error
  is left out of that round. Partitions that disappear leave the gauge.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition

from worker.config import WorkerSettings
from worker.kafka.clients import common_config, consumer_config
from worker.kafka.offsets import PartitionKey
from worker.metrics import Metrics

log = structlog.get_logger("worker.kafka")

#: How often the group's lag is read (the brokers answer three requests per round).
DEFAULT_INTERVAL_S = 30.0
_TIMEOUT_S = 10.0  # per request; a round takes at most about three times this


class GroupLagCollector:
    """A daemon thread that keeps ``biomarker_group_lag`` current (see the module docstring)."""

    def __init__(
        self,
        settings: WorkerSettings,
        metrics: Metrics,
        *,
        group_id: str | None = None,
        read_committed: bool | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        hooks: dict[str, Any] | None = None,
        admin: Any = None,
    ) -> None:
        """``read_committed``: how the group's consumers read (default: as the worker's
        librdkafka consumer is configured); ``hooks``: extra client settings (the ``logger``);
        ``admin``: an ``AdminClient`` to use instead of one built from the worker's connection
        and security settings."""
        if read_committed is None:
            isolation = consumer_config(settings).get("isolation.level", "read_committed")
            read_committed = isolation == "read_committed"
        self._topics = [item.topic for item in settings.input_topics]
        self._group = group_id or settings.group_id
        self._from_earliest = settings.auto_offset_reset == "earliest"
        self._isolation = (
            IsolationLevel.READ_COMMITTED if read_committed else IsolationLevel.READ_UNCOMMITTED
        )
        self._interval_s = interval_s
        self._config = {**common_config(settings), **(hooks or {})}
        self._admin = admin
        self._gauge = metrics.group_lag
        self._reported: set[PartitionKey] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="group-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to end; a round in progress is not waited out beyond ``timeout``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.collect_once()
            self._stop.wait(self._interval_s)

    def collect_once(self) -> bool:
        """One round: read the offsets and update the gauge; False when it failed."""
        try:
            lags = self._measure()
        except Exception as exc:  # never let the thread die: the next round tries again
            log.warning(
                "group_lag_failed",
                group=self._group,
                error_class=type(exc).__name__,
                error=str(exc),
            )
            lags = {}
            ok = False
        else:
            ok = True
        self._publish(lags)
        return ok

    # ------------------------------------------------------------------ one round
    def _client(self) -> Any:
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = AdminClient(self._config)
        return self._admin

    def _measure(self) -> dict[PartitionKey, int]:
        admin = self._client()
        partitions = self._partitions(admin)
        if not partitions:
            return {}
        committed = self._committed(admin, partitions)
        ends = self._offsets(admin, partitions, latest=True)
        unread = [tp for tp in partitions if _key(tp) not in committed]
        starts = (
            self._offsets(admin, unread, latest=False) if unread and self._from_earliest else {}
        )
        lags: dict[PartitionKey, int] = {}
        for tp in partitions:
            key = _key(tp)
            end = ends.get(key)
            done = committed.get(key, starts.get(key) if self._from_earliest else end)
            if end is not None and done is not None:
                lags[key] = max(0, end - done)
        return lags

    def _partitions(self, admin: Any) -> list[TopicPartition]:
        """Every partition of the input topics (all topics' metadata: asking for one by name
        could create it where the brokers auto-create topics)."""
        metadata = admin.list_topics(timeout=_TIMEOUT_S)
        partitions = []
        for topic in self._topics:
            found = metadata.topics.get(topic)
            if found is not None and found.error is None:
                partitions += [TopicPartition(topic, p) for p in sorted(found.partitions)]
        return partitions

    def _committed(self, admin: Any, partitions: list[TopicPartition]) -> dict[PartitionKey, int]:
        request = ConsumerGroupTopicPartitions(self._group, partitions)
        futures = admin.list_consumer_group_offsets([request], request_timeout=_TIMEOUT_S)
        result = futures[self._group].result(timeout=_TIMEOUT_S * 2)
        return {
            _key(tp): tp.offset
            for tp in result.topic_partitions
            if tp.error is None and tp.offset >= 0
        }

    def _offsets(
        self, admin: Any, partitions: list[TopicPartition], *, latest: bool
    ) -> dict[PartitionKey, int]:
        """Log end (``latest``) or log start offsets; partitions answered with an error are
        left out."""
        from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

        spec = OffsetSpec.latest() if latest else OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        futures = admin.list_offsets(
            dict.fromkeys(partitions, spec),
            isolation_level=self._isolation,
            request_timeout=_TIMEOUT_S,
        )
        offsets: dict[PartitionKey, int] = {}
        failed = 0
        for tp, future in futures.items():
            try:
                offsets[_key(tp)] = future.result(timeout=_TIMEOUT_S * 2).offset
            except Exception:  # this partition only (e.g. no leader now)
                failed += 1
        if failed:
            log.warning("group_lag_partitions_unanswered", group=self._group, partitions=failed)
        return offsets

    def _publish(self, lags: dict[PartitionKey, int]) -> None:
        gauge = self._gauge
        for topic, partition in self._reported - lags.keys():
            gauge.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            gauge.labels(topic=topic, partition=str(partition)).set(lag)
        self._reported = set(lags)


def _key(tp: TopicPartition) -> PartitionKey:
    return (tp.topic, tp.partition)

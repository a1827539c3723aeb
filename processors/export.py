"""``driftline export``: a stage's records over a time range, to Parquet or CSV, in bounded memory.

Records are read partition by partition from the beginning of the stage's topic,
filtered on their ``ts`` (the event time; for examples, the label's time; with
inline labels, examples are the labeled features records), and
written in batches of ``batch_rows`` (pyarrow's ``ParquetWriter``, or CSV
appends), so memory does not grow with the topic. Each row is one record: its
top-level fields, and each feature as a column ``x.<name>``.

>>> flatten({"v": 1, "id": "e1", "key": None, "ts": 2.0, "x": {"a": 1.0}, "y": True})
{'v': 1, 'id': 'e1', 'key': None, 'ts': 2.0, 'y': True, 'x.a': 1.0}
>>> parse_time("1970-01-01T00:01:00Z"), parse_time("60")
(60.0, 60.0)
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from kafka import KafkaConsumer

from contracts import serde
from contracts.settings import KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role, pipeline_topics
from driftline.kafkautil import wait_for_partitions

__all__ = ["export_stage", "flatten", "parse_time", "STAGES"]

STAGES = {"clean": Role.CLEAN, "features": Role.FEATURES, "examples": Role.EXAMPLES}


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch, from a number or an ISO-8601 time."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def flatten(rec: dict) -> dict:
    row = {k: v for k, v in rec.items() if k != "x"}
    for k, v in (rec.get("x") or {}).items():
        row[f"x.{k}"] = v
    return row


class _Sink:
    def __init__(self, path: Path):
        self.path = path
        self.csv = path.suffix.lower() == ".csv"
        self.writer = None
        self.columns: list[str] | None = None
        self.rows = 0

    def write(self, rows: list[dict]) -> None:
        import pandas as pd
        import pyarrow as pa

        if not rows:
            return
        if self.columns is None:
            seen: dict[str, None] = {}
            for r in rows:
                seen.update(dict.fromkeys(r))
            self.columns = list(seen)
        extra = {k for r in rows for k in r} - set(self.columns)
        if extra:
            raise ValueError(f"records after the first batch add columns {sorted(extra)[:5]}; "
                             "export a narrower time range or a larger --batch-rows")
        df = pd.DataFrame(rows, columns=self.columns)
        if self.csv:
            df.to_csv(self.path, mode="a" if self.rows else "w", header=not self.rows, index=False)
        else:
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(str(self.path), table.schema)
            self.writer.write_table(table.cast(self.writer.schema))
        self.rows += len(rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        elif not self.csv and self.rows == 0:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({}), str(self.path))


def _as_example(features: dict) -> dict:
    """A labeled features record as the examples record of the same event (inline labels).

    >>> _as_example({"v": 1, "id": "e1", "key": "k", "ts": 5.0, "x": {"a": 1.0}, "y": 1})
    {'v': 1, 'id': 'e1', 'key': 'k', 'ts': 5.0, 'event_ts': 5.0, 'x': {'a': 1.0}, 'y': 1}
    """
    return {"v": features.get("v", 1), "id": features.get("id"), "key": features.get("key"), "ts": features.get("ts"),
            "event_ts": features.get("ts"), "x": features.get("x"), "y": features["y"]}


def export_stage(spec: Spec, stage: str, to: str | Path, settings: KafkaSettings, namespace: str | None = None,
                 since: float | None = None, until: float | None = None, batch_rows: int = 10_000) -> int:
    """Write ``stage``'s records with ``since <= ts < until`` to ``to``; return how many rows.

    With inline labels the labeled examples are the features records that carry a label (the
    examples topic holds the delayed-label join's output only), so ``examples`` reads those, with
    ``event_ts`` = ``ts`` as the join writes it.
    """
    inline_examples = stage == "examples" and spec.labels.mode == "inline"
    topic = pipeline_topics(spec, namespace)[Role.FEATURES if inline_examples else STAGES[stage]].name
    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False, group_id=None,
                             max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024)
    sink = _Sink(Path(to))
    try:
        for tp in wait_for_partitions(consumer, topic):
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            rows: list[dict] = []
            while consumer.position(tp) < end:
                for records in consumer.poll(timeout_ms=500, max_records=batch_rows).values():
                    for r in records:
                        if r.offset >= end:
                            continue
                        rec = serde.loads(r.value)
                        if inline_examples:
                            if rec.get("y") is None:
                                continue
                            rec = _as_example(rec)
                        ts = rec.get("ts")
                        if (since is not None and ts < since) or (until is not None and ts >= until):
                            continue
                        rows.append(flatten(rec))
                if len(rows) >= batch_rows:
                    sink.write(rows)
                    rows = []
            sink.write(rows)
    finally:
        sink.close()
        consumer.close()
    return sink.rows

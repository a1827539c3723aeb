"""The ingest run against an in-memory producer: accounting, policies, labels, replay, pacing."""

from __future__ import annotations

import threading

import pytest

from contracts import serde
from contracts.spec import load_spec_text
from contracts.topics import Headers, Role
from ingest._pace import Pacer
from ingest.feed import Feed
from ingest.sources import parse_uri
from ingest.testing import MemoryProducer

SPEC = """
name: t
schema:
  fields: {id: str, user: str, x: {type: float, min: 0}, y: bool}
  id: id
  key: user
  label: y
models: {m: {estimator: linear_model.LogisticRegression}}
"""


def spec(**labels):
    text = SPEC
    if labels:
        text += "labels: " + serde.dumps({"mode": "delayed", **labels}).decode() + "\n"
    return load_spec_text(text)


def run(tmp_path, lines: str, name="in.csv", s=None, **kw):
    path = tmp_path / name
    path.write_bytes(lines.encode() if isinstance(lines, str) else lines)
    s = s or spec()
    producer = MemoryProducer(s)
    summary = Feed(s, producer, parse_uri(f"file:{path}"), **kw).run()
    return summary, producer


def test_every_row_is_sent_with_its_id_and_key(tmp_path):
    summary, p = run(tmp_path, "id,user,x,y\na,u1,1.5,true\nb,u2,2,false\n")
    assert (summary.sent, summary.acknowledged, summary.rejected, summary.failed, summary.ok) == (2, 2, 0, 0, True)
    (k1, v1, _), (k2, v2, _) = p.sent[Role.RAW]
    env = serde.loads(v1)
    assert (k1, k2) == (b"u1", b"u2")
    assert env == {"v": 1, "id": "a", "ts": env["ts"], "key": "u1", "data": {"id": "a", "user": "u1", "x": 1.5,
                                                                              "y": True}}


def test_bad_rows_go_to_the_dead_letter_topic_with_reason_and_origin(tmp_path):
    summary, p = run(tmp_path, "id,user,x,y\na,u1,1,true\nb,u2\nc,u3,-1,true\nd,u4,abc,true\n")
    assert (summary.sent, summary.rejected) == (1, 3)
    assert summary.rejected_by_reason == {"wrong_column_count": 1, "out_of_range": 1, "wrong_type": 1}
    dlq = p.sent[Role.DLQ]
    assert dlq[0][1] == b"b,u2\n"
    headers = dict(dlq[0][2])
    assert headers[Headers.REASON] == b"wrong_column_count"
    assert headers[Headers.ORIGIN_TOPIC] == b"file:in.csv"
    assert headers[Headers.ORIGIN_PARTITION] == b"-1"
    assert [dict(h)[Headers.ORIGIN_OFFSET] for _, _, h in dlq] == [b"3", b"4", b"5"]
    assert dlq[1][0] == b"u3"  # the original key, when the row had one
    assert summary.dead_lettered == 3 and summary.ok


def test_skip_counts_without_dead_lettering_and_fail_stops(tmp_path):
    rows = "id,user,x,y\na,u1,1,true\n{\nb,u2,1,true\n"
    summary, p = run(tmp_path, rows, on_error="skip")
    assert (summary.sent, summary.rejected, len(p.sent[Role.DLQ]), summary.ok) == (2, 1, 0, True)
    summary, p = run(tmp_path, rows, on_error="fail")
    assert (summary.sent, summary.rejected, summary.ok) == (1, 1, False)
    assert "line 3" in summary.stopped


def test_unacknowledged_records_make_the_run_fail(tmp_path):
    s = spec()
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"id": "e{i}", "user": "u", "x": 1, "y": true}}\n' for i in range(10)))
    p = MemoryProducer(s, fail_after=7)
    summary = Feed(s, p, parse_uri(f"file:{path}")).run()
    assert (summary.sent, summary.acknowledged, summary.failed, summary.ok) == (10, 7, 3, False)


def test_replaying_a_file_gives_the_same_ids(tmp_path):
    s = load_spec_text(SPEC.replace("  id: id\n", ""))
    lines = "id,user,x,y\na,u1,1,true\nb,u2,2,false\n"
    ids = []
    for _ in range(2):
        _, p = run(tmp_path, lines, s=s)
        ids.append([v["id"] for v in p.values(Role.RAW)])
    assert ids[0] == ids[1] == ["file:in.csv:2", "file:in.csv:3"]


def test_loop_starts_over_with_new_ids_and_limit_stops(tmp_path):
    s = load_spec_text(SPEC.replace("  id: id\n", ""))
    summary, p = run(tmp_path, "id,user,x,y\na,u1,1,true\nb,u2,2,false\n", s=s, loop=True, limit=5)
    assert summary.sent == 5
    ids = [v["id"] for v in p.values(Role.RAW)]
    assert len(set(ids)) == 5 and ids[2] == "file:in.csv@1:2"


def test_delayed_labels_leave_the_record_and_follow_n_events_later(tmp_path):
    s = spec(delay_events=2)
    rows = "id,user,x,y\n" + "".join(f"e{i},u,{i},{'true' if i % 2 else 'false'}\n" for i in range(5))
    summary, p = run(tmp_path, rows, s=s)
    raw, labels = p.values(Role.RAW), p.values(Role.LABELS)
    assert all("y" not in r["data"] for r in raw)
    assert [(lab["id"], lab["y"]) for lab in labels] == [(f"e{i}", bool(i % 2)) for i in range(5)]
    assert [k for k, _, _ in p.sent[Role.LABELS]] == [f"e{i}".encode() for i in range(5)]
    assert summary.labels_sent == summary.labels_acknowledged == 5
    # e0's label is revealed once e2 is sent, e1's after e3; the last two when the source ends
    order = [(role.value, serde.loads(v)["id"]) for role, v in p.order]
    assert order == [("raw", "e0"), ("raw", "e1"), ("raw", "e2"), ("labels", "e0"), ("raw", "e3"),
                     ("labels", "e1"), ("raw", "e4"), ("labels", "e2"), ("labels", "e3"), ("labels", "e4")]


def test_label_file_feeds_the_labels_topic(tmp_path):
    summary, p = run(tmp_path, "id,y\ne1,true\ne2,false\n,true\n", s=spec(delay_events=1), labels_file=True)
    assert [(v["id"], v["y"]) for v in p.values(Role.LABELS)] == [("e1", True), ("e2", False)]
    assert (summary.sent, summary.rejected, p.sent[Role.RAW]) == (2, 1, [])


def test_stop_event_flushes_and_accounts(tmp_path):
    stop = threading.Event()
    stop.set()
    summary, p = run(tmp_path, "id,user,x,y\na,u1,1,true\n", stop=stop)
    assert summary.interrupted and summary.sent == 0 and summary.ok


def test_pacer_rate_and_event_time_replay():
    p = Pacer(rate=1000, start=10.0)
    assert p.delay(500, None, now=10.0) == pytest.approx(0.5)
    assert p.delay(500, None, now=11.0) == 0.0
    r = Pacer(speedup=60, start=0.0)
    assert r.delay(0, 0.0, now=0.0) == 0.0
    assert r.delay(1, 3600.0, now=0.0) == pytest.approx(60.0)  # an hour of events in a minute


def test_speedup_needs_an_event_time_field(tmp_path):
    with pytest.raises(ValueError, match="schema.time"):
        Feed(spec(), MemoryProducer(spec()), parse_uri("dataset:phishing"), speedup=10)


def test_limit_bounds_an_endless_source_even_when_every_record_is_rejected():
    s = spec()  # SEA's features are not in this schema: every record is rejected
    summary = Feed(s, MemoryProducer(s), parse_uri("synth:sea?seed=1"), on_error="skip", limit=50).run()
    assert (summary.sent, summary.rejected, summary.rejected_by_reason) == (0, 50, {"unknown_field": 50})


def test_speedup_replays_at_the_event_time_pace(tmp_path):
    import time

    s = load_spec_text(SPEC.replace("  label: y\n", "  label: y\n  time: t\n").replace("y: bool}", "y: bool, t: float}"))
    rows = "id,user,x,y,t\n" + "".join(f"e{i},u,1,true,{1000 + i}\n" for i in range(4))  # 3 s of events
    t0 = time.monotonic()
    summary, p = run(tmp_path, rows, s=s, speedup=10)
    took = time.monotonic() - t0
    assert summary.sent == 4 and 0.3 <= took < 2.0
    assert [v["ts"] for v in p.values(Role.RAW)] == [1000.0, 1001.0, 1002.0, 1003.0]


def test_the_tally_counts_each_future_once_in_order_of_sending():
    """Acknowledgements are counted from the futures of the records sent, head first: a record done
    behind one still in flight is counted with it, and a failure is kept with its exception."""
    from kafka.future import Future

    from ingest.producer import _Tally

    t = _Tally("raw")
    futures = [Future() for _ in range(4)]
    for f in futures:
        t.track(f)
    futures[1].success(None)
    assert (t.sent, t.acked, t.failed) == (4, 0, [])  # the first is still in flight
    futures[0].success(None)
    assert t.acked == 2
    boom = RuntimeError("broker gone")
    futures[2].failure(boom)
    futures[3].success(None)
    assert (t.acked, t.failed) == (3, [boom])
    assert t.acked == 3 and len(t.failed) == 1  # settled once: reading again counts nothing twice


def test_the_tally_is_exact_with_threads_sending_and_reading_at_once():
    """The gateway sends from several request threads, each reading the counts as it goes."""
    import sys

    from kafka.future import Future

    from ingest.producer import _Tally

    t, per_thread, threads = _Tally("raw"), 2000, 4
    overcounts: list = []

    def work(seed: int) -> None:
        for i in range(per_thread):
            f = Future()
            t.track(f)
            if (i + seed) % 7 == 0:
                f.failure(RuntimeError("no"))
            else:
                f.success(None)
            if i % 50 == 0:
                acked = t.acked  # read while the others send and settle
                if acked > t.sent:
                    overcounts.append((acked, t.sent))

    workers = [threading.Thread(target=work, args=(s,)) for s in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: races show
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(interval)
    failures = sum(1 for s in range(threads) for i in range(per_thread) if (i + s) % 7 == 0)
    assert not overcounts
    assert t.sent == per_thread * threads
    assert (t.acked, len(t.failed)) == (per_thread * threads - failures, failures)

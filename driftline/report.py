"""``driftline report``: each model's metric over time, the drifts and the champion changes, as a PNG.

For people without Grafana. It reads three topics of a pipeline from the
beginning to their current end:

* **predictions**: which model predicted what, for which event, in order;
* **features** and **examples**: the labels (``y``), by event id;
* **events**: the learner's decisions: ``drift`` (model, ``at`` labeled events)
  and ``promotion`` (``to``, ``at``).

It scores every prediction against its label with the spec's primary metric
over the spec's rolling window (prequentially, in prediction order), and draws
a line per model against the event index, a dashed vertical mark per drift and
a star where a model became champion. The pure part, :func:`build_report`,
takes records, so it is tested without a broker:

>>> preds = [{"id": str(i), "model": "m", "y_pred": i % 2 == 0} for i in range(6)]
>>> labels = {str(i): True for i in range(6)}
>>> r = build_report(preds, labels, [{"type": "drift", "model": "m", "at": 4}], "Accuracy", window=2)
>>> r.curves["m"][-1], r.drifts
((6, 0.5), [('m', 4)])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from contracts import serde
from contracts.settings import KafkaSettings
from contracts.spec import Spec
from contracts.topics import Role, pipeline_topics

__all__ = ["Report", "build_report", "render_png", "read_topic", "make_report", "DRIFT_COLOR", "model_colors"]

DRIFT_COLOR = "#ff00ff"  # magenta: no model line uses it
# Model lines: matplotlib's tab10 without its magenta-like pink.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f", "#bcbd22", "#17becf"]


@dataclass
class Report:
    metric: str
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # model → [(event index, value)]
    drifts: list[tuple[str, int]] = field(default_factory=list)                 # (model, event index)
    promotions: list[tuple[str, int]] = field(default_factory=list)             # (new champion, event index)
    events: int = 0


def model_colors(models) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(models))}


def _pairs_to_dict(proba):
    return None if proba is None else {k: v for k, v in proba}


def build_report(predictions, labels: dict, decisions, metric: str, window: int = 1000,
                 every: int | None = None) -> Report:
    """Score ``predictions`` (in order) against ``labels`` (id → y) with a rolling ``metric``."""
    from river import metrics as river_metrics, utils

    cls = getattr(river_metrics, metric)
    rolling: dict[str, object] = {}
    report = Report(metric)
    index: dict[str, int] = {}
    for p in predictions:
        eid = p["id"]
        x = index.setdefault(eid, len(index) + 1)
        y = labels.get(eid)
        if y is None:
            continue
        m = rolling.get(p["model"])
        if m is None:
            m = rolling[p["model"]] = utils.Rolling(cls(), window_size=window)
        y_pred = p.get("y_pred") if m.obj.requires_labels else _pairs_to_dict(p.get("proba"))
        if y_pred is None:
            continue
        m.update(y, y_pred)
        if every is None or x % every == 0:
            report.curves.setdefault(p["model"], []).append((x, m.get()))
    report.events = len(index)
    for d in decisions:
        if d.get("type") == "drift" and d.get("at") is not None:
            report.drifts.append((d["model"], int(d["at"])))
        elif d.get("type") == "promotion" and d.get("at") is not None:
            report.promotions.append((d["to"], int(d["at"])))
    return report


def render_png(report: Report, path: str | Path, title: str = "", width_in: float = 12.0,
               height_in: float = 6.0, dpi: int = 100) -> Path:
    """Draw ``report`` into a PNG at ``path`` (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = model_colors(report.curves)
    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=dpi)
    try:
        for model, points in sorted(report.curves.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, color=colors[model], linewidth=1.6, label=model)
        for i, (model, at) in enumerate(report.drifts):
            ax.axvline(at, color=DRIFT_COLOR, linestyle="--", linewidth=1.4,
                       label="drift" if i == 0 else None)
        for model, at in report.promotions:
            y = _value_at(report.curves.get(model, []), at)
            if y is not None:
                ax.plot([at], [y], marker="*", markersize=14, color=colors.get(model, "black"),
                        markeredgecolor="black", linestyle="none")
                ax.annotate(f"champion: {model}", (at, y), textcoords="offset points", xytext=(4, 8), fontsize=8)
        ax.set_xlabel("event")
        ax.set_ylabel(f"rolling {report.metric}")
        ax.set_title(title or f"{report.metric} per model ({report.events} events)")
        ax.grid(alpha=0.3)
        if report.curves:
            ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _value_at(points, at):
    best = None
    for x, y in points:
        if x > at:
            break
        best = y
    return best if best is not None else (points[0][1] if points else None)


def read_topic(settings: KafkaSettings, topic: str, limit: int | None = None) -> list[dict]:
    """Every decodable record of ``topic``, from the beginning to its end as of now."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False, group_id=None)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    try:
                        out.append(serde.loads(r.value))
                    except (serde.DecodeError, TypeError, ValueError):
                        continue
            if limit is not None and len(out) >= limit:
                break
        return out
    finally:
        consumer.close()


def make_report(spec: Spec, settings: KafkaSettings, output: str | Path, namespace: str | None = None,
                limit: int | None = None) -> Report:
    """Read the pipeline's topics and write the PNG; returns what it drew."""
    topics = pipeline_topics(spec, namespace)
    labels = {}
    for role in (Role.FEATURES, Role.EXAMPLES):
        for rec in read_topic(settings, topics[role].name):
            if isinstance(rec, dict) and rec.get("y") is not None and "id" in rec:
                labels[rec["id"]] = rec["y"]
    predictions = [p for p in read_topic(settings, topics[Role.PREDICTIONS].name, limit)
                   if isinstance(p, dict) and "id" in p and "model" in p]
    decisions = [d for d in read_topic(settings, topics[Role.EVENTS].name) if isinstance(d, dict)]
    metric = spec.selection.metric or spec.metrics[0]
    every = max(1, len(predictions) // max(1, len(spec.models)) // 2000) or None
    report = build_report(predictions, labels, decisions, metric, spec.metrics_window, every)
    render_png(report, output, title=f"{spec.name}: rolling {metric} ({spec.metrics_window} events) per model")
    return report

"""The pipeline spec: one YAML file that says what a pipeline is.

A spec names the source, the schema (fields, and which of them is the id, the
key, the event time and the label), how labels arrive, the models and the
metrics. It is validated with pydantic before anything starts, and every
error names the field and the fix:

>>> load_spec_text("name: x\\nschema: {fields: {y: bool}, label: y}\\nmodles: {}")
Traceback (most recent call last):
...
contracts.spec.SpecError: invalid pipeline spec:
  - models: required field is missing; add it
  - modles: unknown field; did you mean 'models'? Allowed here: drift, features, labels, ...

Estimators are river classes by dotted name relative to ``river`` (or a full
``river.…`` path), composed with ``|`` into a pipeline, or a
``module:function`` factory for anything custom.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import inspect
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Spec", "SpecError", "FieldSpec", "SchemaSpec", "SourceSpec", "LabelsSpec", "ModelSpec",
    "TopicsSpec", "FeaturesSpec", "StatelessFeature", "StatefulFeature", "load_spec", "load_spec_text", "resolve_callable", "resolve_river_class",
    "SPEC_HELP",
]

# Every command's SPEC argument says this in its --help.
SPEC_HELP = "the pipeline spec (YAML); `driftline spec FILE` checks it and says what it declares"

FieldType = Literal["float", "int", "bool", "str", "datetime"]
TASKS = ("binary", "multiclass", "regression", "anomaly")


class SpecError(ValueError):
    """A pipeline spec is invalid. ``problems`` holds ``(field path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        where = f" ({source})" if source else ""
        lines = "\n".join(f"  - {loc}: {msg}" for loc, msg in problems)
        super().__init__(f"invalid pipeline spec{where}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- resolution


def resolve_callable(ref: str):
    """Import ``module:function`` (or ``module:Class``) and return the object."""
    if ":" not in ref:
        raise ValueError(f"'{ref}' is not of the form 'module:function'")
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module '{module_name}' ({exc}); is it on PYTHONPATH?") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            hint = _did_you_mean(part, names)
            raise ValueError(f"module '{module_name}' has no attribute '{attr}'{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"'{ref}' is not callable")
    return obj


def resolve_river_class(dotted: str):
    """``'linear_model.LogisticRegression'`` → the river class, or a ValueError with a suggestion."""
    path = dotted.strip()
    if path.startswith("river."):
        path = path[len("river."):]
    module_part, _, cls_name = path.rpartition(".")
    if not module_part:
        raise ValueError(f"'{dotted}' should be a dotted name such as 'linear_model.LogisticRegression'")
    try:
        module = importlib.import_module(f"river.{module_part}")
    except ImportError:
        import river

        mods = [m for m in dir(river) if not m.startswith("_")]
        raise ValueError(f"river has no module '{module_part}'{_did_you_mean(module_part, mods)}") from None
    cls = getattr(module, cls_name, None)
    if cls is None or not inspect.isclass(cls):
        names = [n for n in getattr(module, "__all__", dir(module)) if not n.startswith("_")]
        raise ValueError(f"unknown estimator 'river.{module_part}.{cls_name}'{_did_you_mean(cls_name, names)}")
    return cls


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# ---------------------------------------------------------------- sections


class SourceSpec(_Strict):
    """Where events come from when driftline itself feeds them (``run``, ``ingest``)."""

    kind: Literal["river", "file", "generator", "stdin"] = "river"
    name: str | None = Field(None, description="river dataset or generator name, e.g. Phishing")
    path: str | None = Field(None, description="file path for kind=file (CSV, JSONL or Parquet)")
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _needs(self):
        if self.kind in ("river", "generator") and not self.name:
            raise ValueError(f"source.kind={self.kind} needs source.name (for example 'Phishing')")
        if self.kind == "file" and not self.path:
            raise ValueError("source.kind=file needs source.path")
        return self


class FieldSpec(_Strict):
    type: FieldType = "float"
    required: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[Any] | None = None
    coerce: bool = Field(True, description="accept '3.5' for a float, 1 for a bool, …")
    nulls: Literal["reject", "drop", "impute"] = "reject"
    impute: Any = None


class SchemaSpec(_Strict):
    version: int = Field(1, ge=1)
    fields: dict[str, FieldSpec]
    id: str | None = Field(None, description="event id field; derived from source and position when absent")
    key: str | None = Field(None, description="entity key field: the Kafka message key")
    time: str | None = Field(None, description="event-time field; ingest time when absent")
    label: str | None = Field(None, description="label field (absent for unsupervised anomaly detection)")
    max_record_bytes: int = Field(1_000_000, ge=64)
    nan: Literal["reject", "allow"] = "reject"
    dedup_seconds: float = Field(3600.0, gt=0, description="event time an event id is remembered for dedup")

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, v):
        # `fields: {x: float}` is shorthand for `fields: {x: {type: float}}`
        if isinstance(v, dict):
            return {k: ({"type": t} if isinstance(t, str) else t) for k, t in v.items()}
        return v

    @model_validator(mode="after")
    def _roles_exist(self):
        for role in ("id", "key", "time", "label"):
            name = getattr(self, role)
            if name is not None and name not in self.fields:
                raise ValueError(
                    f"schema.{role} names '{name}', which is not among schema.fields"
                    f"{_did_you_mean(name, self.fields)}; declare it under schema.fields"
                )
        return self

    @property
    def feature_names(self) -> list[str]:
        special = {self.id, self.key, self.time, self.label}
        return [f for f in self.fields if f not in special]


class LabelsSpec(_Strict):
    mode: Literal["inline", "delayed"] = "inline"
    delay_events: int | None = Field(None, ge=1, description="with mode=delayed: label follows N events later")
    delay_seconds: float | None = Field(None, gt=0)
    ttl_seconds: float = Field(3600.0, gt=0, description="how long features wait for their label")


class TopicsSpec(_Strict):
    prefix: str | None = Field(None, description="topic name prefix; the spec name when absent")
    partitions: int = Field(1, ge=1, le=10_000)
    replication: int | None = Field(None, ge=1)


class ModelSpec(_Strict):
    """One model: a river estimator or pipeline, or a ``module:function`` factory."""

    estimator: str | list[str | dict[str, dict[str, Any]]] | dict[str, dict[str, Any]] | None = None
    factory: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.estimator is None) == (self.factory is None):
            raise ValueError("give exactly one of 'estimator' (river, e.g. "
                             "'preprocessing.StandardScaler | linear_model.LogisticRegression') or "
                             "'factory' ('module:function')")
        return self

    def steps(self) -> list[tuple[str, dict[str, Any]]]:
        """The estimator as ``[(dotted name, params), …]``; ``params`` applies to the last step."""
        est = self.estimator
        if isinstance(est, str):
            steps = [(s.strip(), {}) for s in est.split("|")]
        elif isinstance(est, dict):
            steps = list(est.items())
        else:
            steps = []
            for s in est or []:
                if isinstance(s, str):
                    steps.append((s, {}))
                else:
                    steps.extend(s.items())
        if self.params and steps:
            name, p = steps[-1]
            steps[-1] = (name, {**p, **self.params})
        return steps


class SelectionSpec(_Strict):
    """How the champion is chosen among the models learning side by side."""

    metric: str | None = Field(None, description="primary metric; the first of 'metrics' when absent")
    min_events: int = Field(500, ge=1, description="labeled events a model needs before it can be champion")
    margin: float = Field(0.01, ge=0, description="a challenger must beat the champion by this much")


class SearchSpec(_Strict):
    """Online hyperparameter search: candidates of one base model, pruned by successive halving."""

    model: str = Field(description="name of the base model under 'models'")
    grid: dict[str, list[Any]] | None = Field(None, description="param: [values] of the last step; full grid")
    random: dict[str, list[Any]] | None = Field(None, description="param: [values] to sample 'n' candidates from")
    n: int = Field(8, ge=2, le=256)
    seed: int = 42
    min_events: int = Field(200, ge=1, description="labeled events before the first halving")
    eta: int = Field(2, ge=2, description="keep 1/eta of the candidates at each rung")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.grid is None) == (self.random is None):
            raise ValueError("give exactly one of 'grid' or 'random' under 'search'")
        return self


class DriftSpec(_Strict):
    detector: str = Field("drift.ADWIN", description="river drift detector by dotted name")
    params: dict[str, Any] = Field(default_factory=dict)
    policy: Literal["alert", "reset", "challenger"] = "challenger"
    max_challengers: int = Field(2, ge=0, description="fresh challengers alive at once per model")


class SnapshotSpec(_Strict):
    every_events: int = Field(10_000, ge=1)
    every_seconds: float = Field(30.0, gt=0)
    directory: str | None = Field(None, description="local snapshot dir; $DRIFTLINE_HOME/snapshots/<name>")
    keep: int = Field(3, ge=1)


# ---------------------------------------------------------------- features (processors)

STATELESS_OPS = ("log1p", "sqrt", "abs", "square", "scale", "clip", "hour", "minute", "weekday", "day",
                 "month", "onehot", "hash")
STATEFUL_AGGS = ("count", "sum", "mean", "var", "min", "max", "since_last", "last", "ewm")
_WINDOWED = ("count", "sum", "mean", "var", "min", "max")


class StatelessFeature(_Strict):
    """A feature computed from one event alone: a numeric transform, a datetime part, a
    one-hot category or a hashed bucket. Its name defaults to ``<field>_<op>``."""

    field: str
    op: Literal["log1p", "sqrt", "abs", "square", "scale", "clip", "hour", "minute", "weekday", "day",
                "month", "onehot", "hash"]
    name: str | None = None
    scale: float = Field(1.0, description="op=scale: (value - offset) * scale")
    offset: float = 0.0
    min: float | None = Field(None, description="op=clip: lower bound")
    max: float | None = Field(None, description="op=clip: upper bound")
    categories: list[Any] | None = Field(None, description="op=onehot: the known values (others: none set)")
    buckets: int = Field(32, ge=1, le=1 << 20, description="op=hash: number of buckets")

    @functools.cached_property  # read per event by the featurizer; the spec is frozen
    def out(self) -> str:
        return self.name or f"{self.field}_{self.op}"


class StatefulFeature(_Strict):
    """A per-key feature over the key's past events (event time): count, sum, mean, var, min or
    max over a tumbling or sliding window; time since the last event; the last value; an EWM."""

    agg: Literal["count", "sum", "mean", "var", "min", "max", "since_last", "last", "ewm"]
    field: str | None = Field(None, description="the numeric field (not needed for count, since_last)")
    window: float | None = Field(None, gt=0, description="seconds; needed by count/sum/mean/var/min/max")
    kind: Literal["sliding", "tumbling"] = "sliding"
    alpha: float = Field(0.3, gt=0, le=1, description="agg=ewm: weight of the newest value")
    default: float = Field(0.0, description="the value when there is nothing to aggregate yet")
    name: str | None = None

    @model_validator(mode="after")
    def _needs(self):
        if self.agg in _WINDOWED and self.window is None:
            raise ValueError(f"agg={self.agg} needs 'window' (seconds)")
        if self.agg not in ("count", "since_last") and not self.field:
            raise ValueError(f"agg={self.agg} needs 'field'")
        return self

    @functools.cached_property  # read per event by the featurizer; the spec is frozen
    def out(self) -> str:
        if self.name:
            return self.name
        parts = [p for p in (self.field, self.agg) if p]
        if self.window is not None:
            parts.append(f"{self.kind[0]}{self.window:g}s")
        return "_".join(parts)


class FeaturesSpec(_Strict):
    """What the featurize stage computes. Without this section, x is the clean fields exactly."""

    passthrough: Literal["numeric", "all", "none"] = Field("numeric", description="clean fields kept in x")
    stateless: list[StatelessFeature] = Field(default_factory=list)
    stateful: list[StatefulFeature] = Field(default_factory=list)
    ttl_seconds: float = Field(86_400.0, gt=0, description="event time a key's state outlives its last event")
    allowed_lateness_seconds: float = Field(0.0, ge=0, description="how late an event may be and still count")


def _check_features(spec: "Spec") -> list[tuple[str, str]]:
    f = spec.features
    if f is None:
        return []
    fields = spec.schema_.fields
    problems, names = [], {}
    numeric = ("float", "int", "bool")
    for section, items in (("stateless", f.stateless), ("stateful", f.stateful)):
        for i, item in enumerate(items):
            loc = f"features.{section}[{i}]"
            if item.field is not None and item.field not in fields:
                problems.append((f"{loc}.field", f"'{item.field}' is not among schema.fields"
                                 f"{_did_you_mean(item.field, fields)}"))
                continue
            ftype = fields[item.field].type if item.field else None
            op = getattr(item, "op", None) or getattr(item, "agg", None)
            if op in ("hour", "minute", "weekday", "day", "month") and ftype not in ("datetime", "float", "int"):
                problems.append((f"{loc}.field", f"op={op} needs a datetime field; '{item.field}' is {ftype}"))
            elif op not in ("onehot", "hash", "hour", "minute", "weekday", "day", "month") and ftype is not None \
                    and ftype not in numeric:
                problems.append((f"{loc}.field", f"{op} needs a numeric field; '{item.field}' is {ftype}"))
            if item.out in names:
                problems.append((loc, f"feature name '{item.out}' is already used by {names[item.out]}; "
                                      "give one of them a 'name'"))
            names[item.out] = loc
    return problems


class Spec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    task: Literal["binary", "multiclass", "regression", "anomaly"] = "binary"
    source: SourceSpec | None = None
    schema_: SchemaSpec = Field(alias="schema")
    labels: LabelsSpec = LabelsSpec()
    topics: TopicsSpec = TopicsSpec()
    models: dict[str, ModelSpec]
    metrics: list[str] = Field(default_factory=lambda: ["Accuracy"])
    metrics_window: int = Field(1000, ge=1, description="events in the rolling metric window")
    predictions_batch: int = Field(1, ge=1, le=10_000, description=(
        "1: one predictions-topic record per event and model (keyed by event id); N > 1: up to N "
        "predictions per record, {'v': 1, 'batch': [...]}, keyed by model (far fewer produce calls)"))
    selection: SelectionSpec = SelectionSpec()
    search: SearchSpec | None = None
    drift: DriftSpec = DriftSpec()
    snapshots: SnapshotSpec = SnapshotSpec()
    features: FeaturesSpec | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("models")
    @classmethod
    def _models_not_empty(cls, v):
        if not v:
            raise ValueError("declare at least one model under 'models'")
        return v

    @property
    def schema(self) -> SchemaSpec:  # noqa: D401 - the public name of the schema section
        return self.schema_

    @property
    def topic_prefix(self) -> str:
        return self.topics.prefix or self.name

    def fingerprint(self) -> str:
        """A stable hash of the spec's content, stored in snapshots."""
        return hashlib.sha256(self.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


def check_references(spec: Spec) -> list[tuple[str, str]]:
    """Resolve every estimator, parameter and metric the spec names; return the problems."""
    self = spec
    problems = []
    for name, m in self.models.items():
        if m.factory:
            try:
                resolve_callable(m.factory)
            except ValueError as exc:
                problems.append((f"models.{name}.factory", str(exc)))
            continue
        for i, (dotted, params) in enumerate(m.steps()):
            loc = f"models.{name}.estimator[{i}]"
            try:
                cls = resolve_river_class(dotted)
            except ValueError as exc:
                problems.append((loc, str(exc)))
                continue
            problems.extend(_check_params(cls, params, loc))
    import river.metrics as rm

    for i, metric in enumerate(self.metrics):
        if not inspect.isclass(getattr(rm, metric, None)):
            names = [n for n in rm.__all__ if n[0].isupper()]
            problems.append((f"metrics[{i}]", f"unknown river metric '{metric}'{_did_you_mean(metric, names)}"))
    if self.selection.metric is not None and self.selection.metric not in self.metrics:
        problems.append(("selection.metric", f"'{self.selection.metric}' is not among 'metrics' {self.metrics}; "
                         "add it there"))
    if self.search is not None and self.search.model not in self.models:
        problems.append(("search.model", f"'{self.search.model}' is not a model under 'models'"
                         f"{_did_you_mean(self.search.model, self.models)}"))
    try:
        resolve_river_class(self.drift.detector)
    except ValueError as exc:
        problems.append(("drift.detector", str(exc)))
    problems.extend(_check_features(self))
    if self.labels.mode == "inline" and self.task != "anomaly" and not self.schema_.label:
        problems.append(("schema.label", f"task '{self.task}' learns from labels: name the label field"))
    return problems


def _check_params(cls, params: dict, loc: str) -> list[tuple[str, str]]:
    """Unknown names, and values that do not fit the constructor's annotations."""
    from pydantic import TypeAdapter

    accepted = _init_params(cls)
    hints = _param_hints(cls)
    problems = []
    for p, value in params.items():
        if accepted is not None and p not in accepted:
            problems.append((f"{loc}.{p}", f"'{cls.__name__}' takes no parameter '{p}'"
                             f"{_did_you_mean(p, accepted)}; it takes {sorted(accepted)}"))
            continue
        hint = hints.get(p)
        if hint is None or isinstance(value, (dict, list)):
            continue
        try:
            TypeAdapter(hint).validate_python(value)
        except ValidationError as exc:
            problems.append((f"{loc}.{p}", f"{value!r} does not fit {cls.__name__}({p}: "
                             f"{getattr(hint, '__name__', hint)}): {exc.errors()[0]['msg']}"))
        except Exception:  # noqa: BLE001 - a hint pydantic cannot check
            continue
    return problems


def _param_hints(cls) -> dict[str, Any]:
    """Each constructor parameter's annotation, where it can be evaluated."""
    import sys

    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return {}
    namespace = dict(vars(sys.modules.get(cls.__module__, object())))
    hints = {}
    for name, param in sig.parameters.items():
        ann = param.annotation
        if ann is inspect.Parameter.empty:
            # No annotation: a number, flag or string default says what the value must be.
            default = param.default
            if isinstance(default, bool):
                hints[name] = bool
            elif isinstance(default, (int, float)):
                hints[name] = float
            elif isinstance(default, str):
                hints[name] = str
            continue
        if isinstance(ann, str):
            try:
                ann = eval(ann, namespace)  # noqa: S307 - annotations of installed river classes
            except Exception:  # noqa: BLE001 - leave unevaluable hints unchecked
                continue
        hints[name] = ann
    return hints


def _init_params(cls) -> set[str] | None:
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n in sig.parameters if n != "self"}


# ---------------------------------------------------------------- loading


def _format(exc: ValidationError, data: Any) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        loc_parts = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tagged-")))]
        loc_parts = [p for p in loc_parts if p not in ("str", "list[union[str,dict[str,dict[str,any]]]]",
                                                         "dict[str,dict[str,any]]")]
        loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc_parts).replace(".[", "[")
        loc = loc.replace("schema_", "schema") or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(loc_parts[:-1])
            msg = f"unknown field{_did_you_mean(str(loc_parts[-1]), allowed)}"
            if allowed:
                msg += f" Allowed here: {', '.join(sorted(allowed))}"
            msg = msg.replace("field;", "field;")
        elif err["type"] == "missing":
            msg = "required field is missing; add it"
        elif err["type"].startswith("value_error"):
            msg = msg.removeprefix("Value error, ")
        else:
            got = err.get("input")
            if not isinstance(got, (dict, list)):
                msg = f"{msg} (got {got!r})"
        problems.append((loc, msg))
    # One problem per location: a union reports each of its arms.
    seen, unique = set(), []
    for loc, msg in problems:
        if loc not in seen:
            seen.add(loc)
            unique.append((loc, msg))
    return unique


def _allowed_fields(parent: list) -> list[str]:
    model: Any = Spec
    for part in parent:
        if isinstance(part, int) or model is None:
            model = getattr(model, "_item", None)
            continue
        fields = getattr(model, "model_fields", {})
        key = "schema_" if part == "schema" else part
        if key in fields:
            ann = fields[key].annotation
            model = ann if inspect.isclass(ann) and issubclass(ann, BaseModel) else _dict_value_model(ann)
        else:  # a dict key such as a model's name
            model = getattr(model, "_item", None)
    if model is None or not hasattr(model, "model_fields"):
        return []
    return [("schema" if k == "schema_" else k) for k in model.model_fields]


class _DictOf:
    def __init__(self, model):
        self._item = model


def _dict_value_model(ann):
    args = getattr(ann, "__args__", ())
    if len(args) == 2 and inspect.isclass(args[1]) and issubclass(args[1], BaseModel):
        return _DictOf(args[1])
    return None


def load_spec_text(text: str, source: str | None = None) -> Spec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([("(yaml)", f"not valid YAML: {exc}")], source) from None
    if not isinstance(data, dict):
        raise SpecError([("(top level)", "a spec is a YAML mapping with at least 'name', 'schema' and 'models'")],
                        source)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format(exc, data), source) from None
    problems = check_references(spec)
    if problems:
        raise SpecError(problems, source)
    return spec


def load_spec(path: str | Path) -> Spec:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError([("(file)", f"cannot read {p}: {exc.strerror}")], str(p)) from None
    return load_spec_text(text, str(p))

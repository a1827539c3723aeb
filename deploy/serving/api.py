"""The HTTP API: what the model is now, what it predicts, and the admin routes to pin it.

Routes: ``GET /models``, ``GET /models/{name}``, ``POST /predict``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics``, and, behind a bearer token,
``PUT``/``DELETE /admin/models/{name}/pin``. No route accepts model bytes:
models arrive only as signed snapshots on the models topic. For a spec with
stateful per-key features, ``/predict`` reads each key's state from the
processors' ``keys`` changelog (:mod:`deploy.serving.state`), and ``/readyz``
also waits until that topic is read up to its end as of start.
"""


import gc
import hmac
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.spec import Spec

from deploy.serving import _metrics as m
from deploy.serving._edge import Edge
from deploy.serving.config import ServingConfig
from deploy.serving.inference import RecordReader, predict_one, rejection_detail
from deploy.serving.store import ModelStore, NoModelYet, ServedModel, UnknownModel, UnknownVersion
from driftline._fastapi import telemetry_off

__all__ = ["create_app"]


# ---------------------------------------------------------------- schemas


class PredictRequest(BaseModel):
    """One record, or a batch, in the raw schema (the fields of the spec's ``schema``)."""

    model_config = ConfigDict(extra="forbid")
    record: dict[str, Any] | None = Field(None, description="one record in the raw schema")
    records: list[dict[str, Any]] | None = Field(None, min_length=1, description="a batch of records")

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.record is None) == (self.records is None):
            raise ValueError("give exactly one of 'record' (one object) or 'records' (a list)")
        return self


class PredictQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, max_length=200, description="the champion when absent")
    version: int | None = Field(None, ge=0, description="an exact version held in memory (replay)")


NO_QUERY = PredictQuery()


class PredictionOut(BaseModel):
    id: str = Field(description="the record's id field, else request:<position>")
    model: str
    version: int = Field(description="events the model had learned: the snapshot that answered")
    y_pred: Any
    proba: list[list[Any]] | None = Field(description="[[label, probability], …] for classifiers")
    score: float | None = Field(description="anomaly score, for anomaly detectors")


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


class ModelInfo(BaseModel):
    name: str
    loaded: bool
    version: int | None = Field(description="the version answering now (the pinned one, if pinned)")
    latest_version: int | None
    pinned: int | None
    champion: bool
    learned: int | None = Field(description="events learned, from the snapshot's counts")
    metrics: dict[str, Any] = Field(description="{'cumulative': {...}, 'rolling': {...}}")
    offsets: dict[str, Any] = Field(description="'topic:partition' → next offset the model was trained through")
    created_at: float | None = Field(description="when the learner took the snapshot (epoch s)")
    received_at: float | None


class ModelDetail(ModelInfo):
    params: str | None
    counts: dict[str, Any]
    spec: str | None
    versions: list[int] = Field(description="versions held in memory: pinnable, replayable with ?version=")


class PinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 1200}]})
    version: int = Field(ge=0)


class ErrorOut(BaseModel):
    error: str
    detail: Any


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: ['body', 'records', 3, 'age'], ['query', 'version']")
    type: str
    msg: str


class ValidationErrorOut(BaseModel):
    detail: list[FieldError]


def _json(value, status: int = 200) -> Response:
    return Response(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS), status, media_type="application/json")


def _invalid(where: str, exc: ValidationError) -> Response:
    """A 422 in FastAPI's shape: each error's place under ``where`` ("query", "body"), its type and message."""
    return _json({"detail": [{"loc": [where, *e["loc"]], "type": e["type"], "msg": e["msg"]}
                             for e in exc.errors(include_url=False, include_input=False)]}, 422)


def _error(status: int, code: str, detail) -> Response:
    return _json({"error": code, "detail": detail}, status)


def _example_record(spec: Spec) -> dict:
    values = {"float": 0.5, "int": 1, "bool": True, "str": "a", "datetime": "2024-01-01T00:00:00Z"}
    out = {}
    for name, f in spec.schema.fields.items():
        if name == spec.schema.label:
            continue
        value = f.categories[0] if f.categories else values[f.type]
        if f.min is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = max(value, type(value)(f.min))
        out[name] = value
    return out


# ---------------------------------------------------------------- the app


def create_app(spec: Spec, store: ModelStore, config: ServingConfig, follower=None, key_states=None) -> FastAPI:
    """The app. ``follower`` feeds ``store`` from the models topic; ``key_states`` (required when the
    spec has stateful features) follows the processors' per-key state (:class:`KeyStateFollower`)."""
    reader = RecordReader(spec, key_states.states if key_states is not None else None)
    followers = {"follower": follower, "key_states": key_states}
    running = [f for f in followers.values() if f is not None]
    bearer = HTTPBearer(auto_error=False, description="the serving admin token")

    @asynccontextmanager
    async def lifespan(_app):
        # Everything made so far (modules, the app, its routes and schemas) lives as long as the
        # process: keep it out of the cyclic collector's full passes. Without this a gen-2 pass took
        # 25-76 ms here, and one per ten seconds at 1,000 req/s was the whole p99 (bench/serve).
        gc.freeze()
        for f in running:
            if not f.is_alive():
                f.start()
        try:
            yield
        finally:
            for f in running:
                f.stop()

    app = FastAPI(title=f"driftline serving: {spec.name}", version="1",
                  description="Answers for the current model of the pipeline, hot-swapped from signed snapshots "
                              "on the models topic. No route accepts model bytes.", lifespan=lifespan,
                  telemetry=telemetry_off())

    def info(name: str, detail: bool = False) -> dict:
        latest = store.latest(name)
        try:
            served = store.get(name)
        except LookupError:
            served = None
        meta = served.meta if served else {}
        out = {
            "name": name, "loaded": served is not None, "version": served.version if served else None,
            "latest_version": latest.version if latest else None, "pinned": store.pinned(name),
            "champion": name == store.champion(), "learned": (meta.get("counts") or {}).get("learned"),
            "metrics": meta.get("metrics") or {}, "offsets": meta.get("offsets") or {},
            "created_at": meta.get("created_at"), "received_at": served.received_at if served else None,
        }
        if detail:
            out.update(params=meta.get("params"), counts=meta.get("counts") or {}, spec=meta.get("spec"),
                       versions=store.versions(name))
        return out

    @app.get("/models", response_model=None, tags=["models"], responses={200: {"model": list[ModelInfo]}})
    async def list_models():
        """Every model: the version answering, champion or not, events learned, metrics, offsets."""
        return _json([info(n) for n in store.names()])

    @app.get("/models/{name}", response_model=None, tags=["models"],
             responses={200: {"model": ModelDetail}, 404: {"model": ErrorOut}})
    async def get_model(name: Annotated[str, Path(max_length=200, examples=["lr"])]):
        """One model, with its params and the versions held in memory."""
        if name not in store.names():
            return _error(404, "unknown_model", f"no model named {name!r}; models: {', '.join(store.names())}")
        return _json(info(name, detail=True))

    example = _example_record(spec)
    examples = {
        "one": {"summary": "one record", "value": {"record": example}},
        "batch": {"summary": "a batch", "value": {"records": [example, example]}},
    }

    # /predict reads and validates its query and body itself, with the same pydantic models, and
    # documents them with those models' schemas: FastAPI's per-request parameter machinery was 40%
    # of a request's CPU here (cProfile of bench/serve's request), pydantic-core's own JSON
    # validation a tenth of that.
    query_schemas = PredictQuery.model_json_schema()["properties"]
    predict_doc = {
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": PredictRequest.model_json_schema(), "examples": examples}}},
        "parameters": [{"name": name, "in": "query", "required": False, "description": field.description,
                        "schema": query_schemas[name]} for name, field in PredictQuery.model_fields.items()],
    }

    @app.post("/predict", response_model=None, tags=["predict"], openapi_extra=predict_doc,
              responses={200: {"model": PredictResponse}, 404: {"model": ErrorOut}, 413: {"model": ErrorOut},
                         422: {"model": ValidationErrorOut}, 503: {"model": ErrorOut}})
    async def predict(request: Request):
        """Clean, featurize and predict, with the same code as the stream. Never changes a model."""
        try:
            query = PredictQuery.model_validate(request.query_params) if request.scope["query_string"] else NO_QUERY
        except ValidationError as exc:
            return _invalid("query", exc)
        try:
            body = PredictRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid("body", exc)
        model, version = query.model, query.version
        records = body.records if body.records is not None else [body.record]
        if len(records) > config.max_batch:
            return _json({"detail": [{"loc": ["body", "records"], "type": "too_long",
                                      "msg": f"at most {config.max_batch} records per request"}]}, 422)
        name = model or store.champion()
        try:
            served = store.get(name, version)
        except UnknownModel as exc:
            return _error(404, "unknown_model", str(exc))
        except UnknownVersion as exc:
            return _error(404, "unknown_version", str(exc))
        except NoModelYet as exc:
            return _error(503, "no_model", f"{exc}; waiting for the learner's snapshot on the models topic")
        return _predict(served, records, body.records is None)

    def _predict(served: ServedModel, records: list[dict], single: bool) -> Response:
        loc = ["body", "record"] if single else ["body", "records"]
        xs, errors = [], []
        for i, record in enumerate(records):
            where = loc if single else [*loc, i]
            try:
                clean = reader.read(record, i)
            except Exception as exc:  # noqa: BLE001 - e.g. an integer too large for a float
                errors.append({"loc": where, "msg": f"{type(exc).__name__}: {exc}", "type": "wrong_type"})
                continue
            if hasattr(clean, "reason"):
                errors.append(rejection_detail(clean, where))
            else:
                xs.append((clean.id, reader.features(clean)))
        if errors:
            return _json({"detail": errors}, 422)
        out = []
        for event_id, x in xs:
            try:
                p = predict_one(served.runner, x)
            except (ArithmeticError, ValueError, TypeError) as exc:
                return _json({"detail": [{"loc": loc, "type": "unpredictable",
                                          "msg": f"the model cannot predict this record: {exc}"}]}, 422)
            out.append({"id": event_id, "model": served.name, "version": served.version, **p})
        m.PREDICTIONS.labels(served.name).inc(len(out))
        return _json({"predictions": out})

    # ---------------------------------------------------------------- health

    @app.get("/healthz", tags=["ops"], response_model=None)
    async def healthz():
        """Alive: 200 while the topic followers (models topic, per-key state) run."""
        body = {"status": "ok", **{name: f.status() if f is not None else None for name, f in followers.items()}}
        if any(not f.is_alive() for f in running):
            body["status"] = "follower_stopped"
            return _json(body, 503)
        return _json(body)

    @app.get("/readyz", tags=["ops"], response_model=None)
    async def readyz():
        """Ready: the followed topics as of start are read, and every model of the spec has a snapshot."""
        caught_up = all(f.caught_up.is_set() for f in running)
        missing = store.missing()
        ready = caught_up and not missing
        m.READY.set(1 if ready else 0)
        return _json({"ready": ready, "caught_up": caught_up, "missing": missing}, 200 if ready else 503)

    @app.get("/metrics", tags=["ops"], response_model=None)
    async def metrics():
        """Prometheus metrics, all named ``driftline_serving_*``."""
        store.update_ages()
        return Response(generate_latest(m.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    # ---------------------------------------------------------------- admin

    def admin(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if creds is None:
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        token = config.admin_token
        if token is None:
            raise HTTPException(403, "admin routes are disabled: no admin token is configured")
        if not hmac.compare_digest(creds.credentials.encode(), token.get_secret_value().encode()):
            raise HTTPException(403, "the bearer token is not the admin token")

    admin_errors = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}

    @app.put("/admin/models/{name}/pin", tags=["admin"], response_model=None, dependencies=[Depends(admin)],
             responses={200: {"model": ModelInfo}, **admin_errors})
    async def pin(name: Annotated[str, Path(max_length=200)], body: PinRequest):
        """Serve this version of the model until unpinned, whatever newer snapshots arrive (rollback)."""
        try:
            store.pin(name, body.version)
        except UnknownModel as exc:
            return _error(404, "unknown_model", str(exc))
        except UnknownVersion as exc:
            return _error(404, "unknown_version", str(exc))
        return _json(info(name))

    @app.delete("/admin/models/{name}/pin", tags=["admin"], response_model=None, dependencies=[Depends(admin)],
                responses={200: {"model": ModelInfo}, **admin_errors})
    async def unpin(name: Annotated[str, Path(max_length=200)]):
        """Serve the newest verified snapshot again."""
        try:
            store.unpin(name)
        except UnknownModel as exc:
            return _error(404, "unknown_model", str(exc))
        return _json(info(name))

    app.add_middleware(Edge, max_body_bytes=config.max_body_bytes)
    return app

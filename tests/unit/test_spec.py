"""A bad spec fails before anything starts, naming the field and the fix."""

import subprocess
import sys
from pathlib import Path

import pytest

from contracts.spec import SpecError, load_spec, load_spec_text

REPO = Path(__file__).resolve().parents[2]

BASE = """
name: t
schema:
  fields: {a: float, y: bool}
  label: y
models:
  lr: {estimator: preprocessing.StandardScaler | linear_model.LogisticRegression}
"""


def problems(text: str) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        load_spec_text(text)
    return dict(info.value.problems)


def test_example_phishing_spec_is_valid():
    spec = load_spec(REPO / "examples" / "phishing.yaml")
    assert spec.source.name == "Phishing"
    assert spec.schema.label == "is_phishing"
    assert len(spec.schema.feature_names) == 9


def test_typo_in_a_field_name_names_the_field_and_suggests_the_fix():
    p = problems(BASE.replace("models:", "modles:"))
    assert "unknown field; did you mean 'models'?" in p["modles"]
    assert p["models"] == "required field is missing; add it"


def test_typo_in_a_nested_field_name_is_located():
    p = problems(BASE.replace("label: y", "lable: y"))
    assert "did you mean 'label'" in p["schema.lable"]


def test_unknown_estimator_names_the_model_and_suggests_the_class():
    p = problems(BASE.replace("LogisticRegression", "LogisticRegresion"))
    assert "unknown estimator 'river.linear_model.LogisticRegresion'" in p["models.lr.estimator[1]"]
    assert "did you mean 'LogisticRegression'" in p["models.lr.estimator[1]"]


def test_unknown_river_module_is_reported():
    p = problems(BASE.replace("linear_model.", "linar_model."))
    assert "did you mean 'linear_model'" in p["models.lr.estimator[1]"]


def test_unknown_parameter_lists_the_accepted_ones():
    text = BASE.replace("linear_model.LogisticRegression}", "linear_model.LogisticRegression, params: {l3: 1}}")
    p = problems(text)
    assert "takes no parameter 'l3'" in p["models.lr.estimator[1].l3"]
    assert "'l2'" in p["models.lr.estimator[1].l3"]


def test_wrong_type_of_a_spec_field():
    p = problems(BASE + "topics: {partitions: many}\n")
    assert "valid integer" in p["topics.partitions"] and "'many'" in p["topics.partitions"]


def test_wrong_type_of_an_estimator_parameter():
    text = BASE.replace("linear_model.LogisticRegression}", "linear_model.LogisticRegression, params: {l2: abc}}")
    p = problems(text)
    assert "'abc' does not fit LogisticRegression(l2: float)" in p["models.lr.estimator[1].l2"]


def test_unknown_field_type_lists_the_choices():
    p = problems(BASE.replace("a: float", "a: flot"))
    assert "'float', 'int', 'bool', 'str' or 'datetime'" in p["schema.fields.a.type"]


def test_label_must_be_a_declared_field():
    p = problems(BASE.replace("label: y", "label: z"))
    assert "not among schema.fields" in p["schema"]


def test_unknown_metric_suggests_the_river_name():
    p = problems(BASE + "metrics: [Acuracy]\n")
    assert "did you mean 'Accuracy'" in p["metrics[0]"]


def test_factory_that_cannot_be_imported_is_reported():
    p = problems(BASE.replace("{estimator: preprocessing.StandardScaler | linear_model.LogisticRegression}",
                              "{factory: 'os.path:nope'}"))
    assert "has no attribute 'nope'" in p["models.lr.factory"]


def test_pipeline_forms_are_equivalent():
    a = load_spec_text(BASE).models["lr"].steps()
    b = load_spec_text(BASE.replace(
        "{estimator: preprocessing.StandardScaler | linear_model.LogisticRegression}",
        "{estimator: [preprocessing.StandardScaler, {linear_model.LogisticRegression: {}}]}")).models["lr"].steps()
    assert a == b


def test_cli_rejects_a_bad_spec_before_starting_anything(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("LogisticRegression", "LogisticRegresion"))
    proc = subprocess.run([sys.executable, "-m", "driftline", "run", str(bad), "--until-drained"],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "DRIFTLINE_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert proc.returncode != 0
    assert "models.lr.estimator[1]" in proc.stderr
    assert "did you mean 'LogisticRegression'" in proc.stderr
    assert "namespace" not in proc.stderr  # nothing started


def test_feature_names_are_cached_without_changing_the_spec():
    """``out`` is read per event by the featurizer, so it is cached; the cache is not spec content."""
    text = (Path(__file__).resolve().parents[2] / "examples" / "bench.yaml").read_text()
    spec, fresh = load_spec_text(text), load_spec_text(text)
    before = (spec.fingerprint(), spec.model_dump())
    names = [s.out for s in spec.features.stateful]
    assert names == ["count_s600s", "f0_mean_s600s", "f1_max_s600s", "since_last", "f2_ewm"]
    assert [s.out for s in spec.features.stateful] == names
    assert (spec.fingerprint(), spec.model_dump()) == before
    assert spec == fresh and spec.fingerprint() == fresh.fingerprint()

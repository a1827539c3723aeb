"""The benchmark runner's tables (bench/ is outside pytest's doctest paths: its peers import optional extras)."""

import doctest

import pytest

import bench.__main__ as runner
import bench._proc as proc


@pytest.mark.parametrize("module", [runner, proc], ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_ratios_gather_the_pipeline_and_the_stage_figures():
    results = {"pipeline": {"ratios": {"driftline_vs_naive": 2.5}, "scaling": {"speedup": 1.3}},
               "learner": {"throughput": {"lr": {"ratio": 0.4}}},
               "processors": {"worker_vs_ceiling": 0.1}}
    assert runner.ratios(results) == {"driftline_vs_naive": 2.5, "scaling_2_workers_2_shards_speedup": 1.3,
                                      "learner_lr_vs_ceiling": 0.4, "processors_worker_vs_ceiling": 0.1}


@pytest.mark.parametrize("variants", ["ceiling,driftline", "quixx", ","])
def test_pipeline_refuses_unknown_variants_before_starting_anything(variants, capsys):
    import bench.pipeline as pipeline

    with pytest.raises(SystemExit) as exc:
        pipeline.main(["--variants", variants])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--variants: unknown" in err and "choose from naive,quix,driftline" in err

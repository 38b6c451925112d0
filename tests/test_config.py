"""Settings declared once (meterread.config): the CLI, the flows and the models share one set of defaults;
unknown keys and bad values are refused with the key named; files, options and key=value overrides compose."""

import inspect

import pytest
import typer.main
from pydantic_core import to_jsonable_python
from typer.testing import CliRunner

from meterread import cli
from meterread.config import (
    DEMO_MODEL_FAMILY,
    ConfigError,
    ModelSpec,
    ReadConfig,
    TrainConfig,
    TrainConfigError,
)
from meterread.settings import merged_settings


def field_default(settings, dotted: str):
    *parents, leaf = dotted.split(".")
    for parent in parents:
        settings = settings.model_fields[parent].annotation
    return settings.model_fields[leaf].default


def cli_defaults(command) -> dict:
    return {param.name: param.default for param in typer.main.get_command(cli.app).commands[command].params}


def test_cli_flow_and_model_defaults_are_the_same_objects():
    from flows.fanout import nightly_fanout, read_shard
    from flows.nightly_read import nightly_read

    defaults = cli_defaults("read")
    for option, setting in cli.READ_OPTIONS.items():
        assert defaults[option] is field_default(ReadConfig, setting), option
    for flow in (nightly_read, nightly_fanout, read_shard):
        assert inspect.signature(flow.fn).parameters["config"].annotation in (ReadConfig, "ReadConfig")
    schema = nightly_read.parameters.definitions["ReadConfig"]["properties"]
    for name, field in ReadConfig.model_fields.items():  # the Prefect UI form shows the model's defaults and help
        if name not in ("source", "output", "model"):
            assert schema[name].get("default") == to_jsonable_python(field.default), name
            assert schema[name]["description"] == field.description, name
    evaluate = cli_defaults("eval")
    assert all(evaluate[name] is field_default(ModelSpec, name) for name in ("adapter", "pattern", "device"))
    assert evaluate["family"] is None  # not given: the checkpoint names its own (next test)
    form = nightly_read.parameters.definitions["ModelSpec"]["properties"]["family"]
    assert "default" in form and form["default"] is None  # the form sends no family: a flow infers it too


def test_a_spec_without_a_family_takes_the_one_its_checkpoint_names(tiny_paligemma, tiny_florence2, tiny_ppocr):
    assert ModelSpec(base=tiny_paligemma).family == "paligemma"
    assert ModelSpec.from_mapping({"base": tiny_florence2}).family == "florence2"
    assert ModelSpec(base=tiny_ppocr).family == "ppocr"
    assert ModelSpec().family == DEMO_MODEL_FAMILY  # the bundled model's config.json says so too
    assert ModelSpec(base="/no/such/dir").family == DEMO_MODEL_FAMILY  # nothing to read: the default
    assert ModelSpec(family="florence2", base=tiny_paligemma).family == "florence2"  # a given family stays (and
    # loading refuses it: tests/models/test_base.py)


def test_every_read_setting_has_help_for_the_form_and_the_cli():
    assert all(field.description for field in ReadConfig.model_fields.values())
    assert all(field.description for field in ModelSpec.model_fields.values())


def test_unknown_keys_are_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown read setting\(s\): batchsize; known: allow_empty, batch_size"):
        ReadConfig.from_mapping({"source": "a", "output": "b", "batchsize": 3})
    with pytest.raises(ConfigError, match=r"unknown model setting\(s\): familly; known: adapter"):
        ReadConfig.from_mapping({"source": "a", "output": "b", "model": {"familly": "paligemma"}})
    with pytest.raises(TrainConfigError, match=r"unknown lora setting\(s\): rnak"):
        TrainConfig.from_mapping({"lora": {"rnak": 4}})
    with pytest.raises(ConfigError, match=r"batch_size: Input should be a valid integer.*'many'"):
        ReadConfig.from_mapping({"source": "a", "output": "b", "batch_size": "many"})


def test_settings_are_frozen_and_replace_checks_like_new():
    config = ReadConfig(source="a", output="b")
    with pytest.raises(ValueError):
        config.batch_size = 3
    assert config.replace(batch_size=3).batch_size == 3 and config.batch_size == 16
    with pytest.raises(ConfigError, match="unknown read setting"):
        config.replace(batchsize=3)
    assert config.replace(prefixes=["2026-11-27/"]).prefixes == ("2026-11-27/",)  # lists become tuples
    assert hash(config.model) == hash(ModelSpec())  # a spec keys the per-process model cache


def test_file_then_values_then_overrides(tmp_path):
    settings = tmp_path / "read.yaml"
    settings.write_text("source: s3://photos\noutput: s3://readings\nbatch_size: 4\nmodel:\n  pattern: '5.1'\n")
    config = ReadConfig.from_yaml(
        settings, ["shard_size=7", "model.device=cpu"], batch_size=8, model={"dtype": "float32"}
    )
    assert (config.source, config.batch_size, config.shard_size) == ("s3://photos", 8, 7)
    assert (config.model.pattern, config.model.device, config.model.dtype) == ("5.1", "cpu", "float32")  # merged
    with pytest.raises(ConfigError, match="must look like key=value"):
        ReadConfig.from_yaml(settings, ["batch_size"])
    assert merged_settings({"model": {"a": 1}, "x": 1}, {"model": {"b": 2}}) == {"model": {"a": 1, "b": 2}, "x": 1}


def test_training_recipes_read_yaml_numbers_without_a_dot():
    config = TrainConfig.from_mapping({"lr": "1e-4", "epochs": "3", "lora": {"targets": ["q_proj"]}})
    assert (config.lr, config.epochs, config.lora.targets) == (1e-4, 3, ("q_proj",))


@pytest.mark.parametrize("base", ["/no/such/model", "runs/ppocr-soup/best", "./no-such-model"])
def test_a_base_that_can_only_be_a_missing_local_dir_fails_up_front(base):
    with pytest.raises(ValueError, match="is no local directory"):
        ModelSpec(family="ppocr", base=base).validate()
    result = CliRunner().invoke(cli.app, ["eval", "data", "--model", base])
    assert result.exit_code == 2 and "is no local directory" in result.output


def test_a_hub_id_or_registry_reference_is_not_taken_for_a_missing_dir():
    ModelSpec(family="paligemma", base="google/paligemma2-3b-pt-224").validate()
    ModelSpec(family="ppocr", base="registry:///tmp/registry").validate()


def test_a_pattern_without_constrained_decoding_is_refused_up_front(tmp_path):
    """A register pattern only holds readings when decoding is constrained: given with --no-constrained it would
    be ignored (rows would record no pattern), so the spec, and the command, refuse the pair."""
    with pytest.raises(ValueError, match="needs constrained decoding"):
        ModelSpec(family="ppocr", base="google/x", constrained=False, pattern="6.1").validate()
    ModelSpec(family="ppocr", base="google/x", constrained=False).validate()
    ModelSpec(family="ppocr", base="google/x", pattern="6.1").validate()
    args = ["read", str(tmp_path / "in"), str(tmp_path / "out"), "--pattern", "6.1", "--no-constrained"]
    result = CliRunner().invoke(cli.app, args, env={"COLUMNS": "300"})  # the error box unwrapped
    assert result.exit_code == 2 and "needs constrained decoding" in result.output

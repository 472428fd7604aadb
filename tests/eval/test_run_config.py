"""RunConfig: one field per setting; the parser, presets, --resume and the report all come from it."""
import dataclasses

import pytest

from qflash_eval.cli import build_parser, config_from_args
from qflash_eval.config import presets
from qflash_eval.run_config import FIELD_NAMES, RESULT_FIELDS, RunConfig


def test_every_field_has_a_flag_and_help_shows_its_default():
    text = build_parser().format_help()
    for f in dataclasses.fields(RunConfig):
        long_flag = next(flag for flag in f.metadata["flags"] if flag.startswith("--"))
        assert long_flag in text, long_flag
    assert "(default: 64)" in text and "(default: sample)" in text and "(default: ILSVRC/imagenet-1k)" in text


def test_defaults_come_from_the_dataclass():
    assert config_from_args(["-m", "deit_tiny"]) == RunConfig(model="deit_tiny")


def test_cuda_graphs_default_to_the_device_and_either_flag_decides():
    assert RunConfig().cuda_graphs is None  # run.prepare: on where the run is on CUDA
    assert config_from_args(["-m", "deit_tiny", "--cuda-graphs"]).cuda_graphs is True
    assert config_from_args(["-m", "deit_tiny", "--no-cuda-graphs"]).cuda_graphs is False


def test_the_evaluation_takes_the_short_flags_of_its_sibling_commands():
    # fallback, sweep and diagnose take -n for their images: an evaluation does too
    assert config_from_args(["-m", "deit_tiny", "-n", "8", "-b", "4"]).num_samples == 8


def test_a_preset_is_an_overlay_and_flags_win():
    smoke = config_from_args(["--preset", "smoke", "-b", "7", "--granularity", "batch"])
    assert smoke.batch_size == 7 and smoke.granularity == "batch"
    assert smoke.model == presets()["smoke"]["model"] and smoke.mode == presets()["smoke"]["mode"]
    assert smoke.ivit_bits == RunConfig.ivit_bits  # neither preset nor flag: the default


def test_an_unknown_setting_in_an_overlay_is_named():
    with pytest.raises(ValueError, match="preset x: unknown setting.*batchsize"):
        RunConfig().overlay({"batchsize": 3}, "preset x")


def test_conflicting_flags_and_bad_numbers_name_the_flag():
    with pytest.raises(ValueError, match="--all and --model"):
        config_from_args(["--all", "-m", "deit_tiny"])
    with pytest.raises(ValueError, match="--batch-size must be at least 1"):
        RunConfig(model="m", batch_size=0).check()
    with pytest.raises(ValueError, match="--granularity must be one of"):
        RunConfig(model="m", granularity="row").check()


def test_the_parser_and_the_kernels_know_the_same_granularities_and_backends():
    import qflash_kernels
    from qflash_eval.run_config import BACKEND_NAMES, GRANULARITY_NAMES

    assert GRANULARITY_NAMES == qflash_kernels.GRANULARITIES and BACKEND_NAMES == qflash_kernels.BACKENDS


def test_result_fields_are_what_decides_the_numbers():
    assert {"model", "mode", "data", "granularity", "batch_size", "dtype", "weights"} <= set(RESULT_FIELDS)
    assert not {"results", "overwrite", "no_progress", "workers", "resume"} & set(RESULT_FIELDS)
    assert set(RESULT_FIELDS) <= set(FIELD_NAMES)

import re
from pathlib import Path

import pytest
import yaml

from atso.config import (
    Config,
    SourceConfig,
    apply_overrides,
    check_paths,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
)
from atso.errors import AtsoError

MINIMAL = {"data": {"train": {"images": "images", "masks": "masks"}}}


def _write_config(folder: Path, data, name: str = "config.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def _minimal(**sections):
    data = {"data": {"train": {"images": "/data/images", "masks": "/data/masks"}}}
    data.update(sections)
    return data


def test_load_minimal_config_fills_defaults(tmp_path):
    config = load_config(_write_config(tmp_path, MINIMAL))
    assert isinstance(config, Config)
    assert config.train.iterations == 1000
    assert config.data.input_size == (96, 128)
    assert config.teacher_student.strategy == "atso"
    assert config.data.description == "camvid"


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    data = {
        "data": {
            "description": "labels.yaml",
            "train": {"images": "images", "masks": "../masks"},
            "test": {"root": "camvid", "split": "test"},
            "unlabeled": [{"list": "extra.txt"}],
            "labeled_list": "labeled.txt",
        },
        "model": {"pretrained": "../runs/m0/model.pt"},
    }
    folder = tmp_path / "configs"
    config = load_config(_write_config(folder, data))
    base = folder.resolve()
    assert config.data.train.images == base / "images"
    assert config.data.train.masks == (tmp_path / "masks").resolve()
    assert config.data.test.root == base / "camvid"
    assert config.data.unlabeled[0].list == base / "extra.txt"
    assert config.data.labeled_list == base / "labeled.txt"
    assert Path(config.data.description) == base / "labels.yaml"
    assert config.model.pretrained == (tmp_path / "runs" / "m0" / "model.pt").resolve()


def test_a_set_path_resolves_against_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = {"data": {"train": {"root": "camvid", "split": "train"}, "test": {"root": "camvid", "split": "val"}}}
    config = load_config(_write_config(tmp_path / "configs", data), ["data.train.root=mine", "data.test={root: t, split: v}"])
    assert config.data.train.root == tmp_path.resolve() / "mine"
    assert config.data.test.root == tmp_path.resolve() / "t"


def test_a_missing_path_is_named_as_written_and_as_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs" / "camvid").mkdir(parents=True)
    data = {"data": {"train": {"root": "camvid", "split": "train"}, "test": {"root": "../gone", "split": "val"}}}
    path = _write_config(tmp_path / "configs", data)
    with pytest.raises(AtsoError) as info:
        check_paths(load_config(path))
    assert str(info.value) == (
        f"{path}: data.test.root: '../gone' resolves to {tmp_path.resolve() / 'gone'} (relative to the config "
        f"file's folder, {path.parent.resolve()}), which does not exist; fix it or write an absolute path"
    )
    with pytest.raises(AtsoError, match=r"^--set data.train.root=nope: data.train.root: 'nope' resolves to .*nope "
                                        r"\(relative to the current folder"):
        check_paths(load_config(path, ["data.train.root=nope"]))
    check_paths(load_config(path, ["data.test.root=configs/camvid"]))


@pytest.mark.parametrize("value, hint", [("72,96", "data.input_size=[72,96]"), ("[72]", "data.input_size=[96,128]")])
def test_a_bad_pair_in_set_says_how_to_write_it(tmp_path, value, hint):
    path = _write_config(tmp_path, MINIMAL)
    with pytest.raises(AtsoError) as info:
        load_config(path, [f"data.input_size={value}"])
    message = str(info.value)
    assert message.startswith(f"--set data.input_size={value}: 'data.input_size': ") and message.endswith(hint), message


def test_absolute_paths_and_builtin_description_are_kept(tmp_path):
    absolute = (tmp_path / "elsewhere").resolve()
    data = {"data": {"train": {"images": str(absolute), "masks": str(absolute)}}}
    config = load_config(_write_config(tmp_path / "configs", data))
    assert config.data.train.images == absolute
    assert config.data.description == "camvid"


@pytest.mark.parametrize(
    "text, path, value",
    [
        ("train.iterations=5", ["train", "iterations"], 5),
        ("train.lr=0.5", ["train", "lr"], 0.5),
        ("data.input_size=[32,48]", ["data", "input_size"], [32, 48]),
        ("train.hflip=false", ["train", "hflip"], False),
        ("model.name=small_unet", ["model", "name"], "small_unet"),
        ("a.b=x=y", ["a", "b"], "x=y"),
        ("a=", ["a"], ""),
    ],
)
def test_parse_override_reads_yaml_values(text, path, value):
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize("text", ["train.iterations", "=5"])
def test_parse_override_rejects_malformed(text):
    with pytest.raises(AtsoError, match="--set"):
        parse_override(text)


def test_apply_overrides_sets_nested_keys_and_creates_sections():
    data = {"train": {"iterations": 10}}
    result = apply_overrides(data, ["train.iterations=5", "model.options.width=8"])
    assert result == {"train": {"iterations": 5}, "model": {"options": {"width": 8}}}


def test_apply_overrides_into_a_value_is_an_error():
    with pytest.raises(AtsoError, match="'iterations' is not a section"):
        apply_overrides({"train": {"iterations": 10}}, ["train.iterations.x=1"])


def test_load_config_applies_typed_overrides(tmp_path):
    path = _write_config(tmp_path, MINIMAL)
    config = load_config(
        path, ["train.iterations=5", "data.input_size=[32,48]", "teacher_student.strategy=stso", "runtime.quiet=true"]
    )
    assert config.train.iterations == 5
    assert config.data.input_size == (32, 48)
    assert config.teacher_student.strategy == "stso"
    assert config.runtime.quiet is True


def test_unknown_key_names_the_full_key_and_lists_allowed_keys(tmp_path):
    path = _write_config(tmp_path, MINIMAL)
    with pytest.raises(AtsoError) as info:
        load_config(path, ["train.bogus=1"])
    message = str(info.value)
    assert message.startswith("--set train.bogus=1: ") and str(path) not in message  # the option, not the file
    assert "'train.bogus'" in message
    assert "iterations" in message and "batch_size" in message and "checkpoint_every" in message


@pytest.mark.parametrize(
    "data, key, allowed",
    [
        (_minimal(bogus={}), "'bogus'", "teacher_student"),
        ({"data": {"train": {"images": "/i", "masks": "/m", "bogus": 1}}}, "'data.train.bogus'", "mask_suffix"),
        (
            {"data": {"train": {"images": "/i", "masks": "/m"}, "unlabeled": [{"images": "/u", "bogus": 1}]}},
            "'data.unlabeled.0.bogus'",
            "mask_suffix",
        ),
    ],
)
def test_unknown_keys_at_every_level(data, key, allowed):
    with pytest.raises(AtsoError, match="unknown key") as info:
        config_from_dict(data)
    assert key in str(info.value)
    assert allowed in str(info.value)


def test_wrong_type_names_the_key(tmp_path):
    path = _write_config(tmp_path, MINIMAL)
    with pytest.raises(AtsoError) as info:
        load_config(path, ["train.iterations=abc"])
    assert "'train.iterations'" in str(info.value)
    assert str(info.value).startswith("--set train.iterations=abc: ")


def test_out_of_range_value_names_the_key():
    with pytest.raises(AtsoError, match="'train.lr'"):
        config_from_dict(_minimal(train={"lr": 0}))


@pytest.mark.parametrize("threads", [0, -1, "two", True, 1.5])
def test_bad_thread_count_is_one_line_naming_the_key(threads):
    with pytest.raises(AtsoError) as info:
        config_from_dict(_minimal(runtime={"threads": threads}))
    message = str(info.value)
    assert "'runtime.threads'" in message and "give auto or a whole number" in message and "\n" not in message


def test_thread_count_is_auto_or_a_number():
    assert config_from_dict(_minimal()).runtime.threads == "auto"
    assert config_from_dict(_minimal(runtime={"threads": 2})).runtime.threads == 2


def test_bad_literal_lists_allowed_values(tmp_path):
    path = _write_config(tmp_path, MINIMAL)
    with pytest.raises(AtsoError) as info:
        load_config(path, ["teacher_student.strategy=x"])
    message = str(info.value)
    assert "'teacher_student.strategy'" in message
    for strategy in ("supervised", "self-learning", "stso", "atso"):
        assert f"'{strategy}'" in message


def test_missing_data_section_is_named():
    with pytest.raises(AtsoError, match="missing key 'data'"):
        config_from_dict({})


def test_section_validators_report_their_rule():
    with pytest.raises(AtsoError, match="'train'.*scale_range"):
        config_from_dict(_minimal(train={"scale_range": [2.0, 1.0]}))
    with pytest.raises(AtsoError, match="'train'.*student_scale_range"):
        config_from_dict(_minimal(train={"student_scale_range": [0.0, 1.0]}))
    with pytest.raises(AtsoError, match="at most one of labeled_count"):
        config_from_dict({"data": {"train": {"images": "/i", "masks": "/m"}, "labeled_count": 2, "labeled_fraction": 0.5}})
    with pytest.raises(AtsoError, match="'data.input_size'.*at least 16"):
        config_from_dict({"data": {"train": {"images": "/i", "masks": "/m"}, "input_size": [8, 32]}})
    with pytest.raises(AtsoError, match="'teacher_student'.*confidence_threshold or class_balanced_keep"):
        config_from_dict(_minimal(teacher_student={"confidence_threshold": 0.7, "class_balanced_keep": 0.5}))


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(AtsoError, match="nope.yaml: config file not found"):
        load_config(path)


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data: [unclosed\n  train: {")
    with pytest.raises(AtsoError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "not valid YAML" in str(info.value)


def test_yaml_that_is_not_a_mapping_names_the_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(AtsoError, match="list.yaml: expected a mapping"):
        load_config(path)


@pytest.mark.parametrize(
    "fields",
    [
        {"root": "/camvid", "split": "train"},
        {"images": "/images"},
        {"images": "/images", "masks": "/masks", "mask_suffix": "_mask"},
        {"list": "/train.txt"},
    ],
)
def test_source_config_accepts_each_layout(fields):
    source = SourceConfig(**fields)
    for key, value in fields.items():
        assert str(getattr(source, key)) == value


@pytest.mark.parametrize(
    "fields, match",
    [
        ({}, "exactly one of"),
        ({"root": "/camvid", "split": "train", "images": "/images"}, "exactly one of"),
        ({"images": "/images", "list": "/train.txt"}, "exactly one of"),
        ({"root": "/camvid"}, "root and split go together"),
        ({"split": "train"}, "root and split go together"),
        ({"list": "/train.txt", "masks": "/masks"}, "masks needs images"),
    ],
)
def test_source_config_layout_rules(fields, match):
    with pytest.raises(ValueError, match=match):
        SourceConfig(**fields)


def test_source_layout_errors_name_the_key_through_the_loader():
    with pytest.raises(AtsoError, match="'data.test': give exactly one of"):
        config_from_dict({"data": {"train": {"images": "/i", "masks": "/m"}, "test": {"images": "/i", "list": "/l"}}})


def test_fingerprint_ignores_runtime_but_not_results():
    base = config_from_dict(_minimal())
    assert base.fingerprint() == config_from_dict(_minimal()).fingerprint()
    runtime = config_from_dict(_minimal(runtime={"device": "cpu", "num_workers": 4, "quiet": True, "amp": False}))
    assert runtime.fingerprint() == base.fingerprint()
    threads = config_from_dict(_minimal(runtime={"threads": 3, "compile": True}))
    assert threads.fingerprint() == base.fingerprint()
    lr = config_from_dict(_minimal(train={"lr": 0.02}))
    assert lr.fingerprint() != base.fingerprint()
    assert len(base.fingerprint()) == 16


def test_dump_config_round_trips(tmp_path):
    config = load_config(
        _write_config(tmp_path, MINIMAL),
        ["data.input_size=[32,48]", "train.scale_range=[0.5,2.0]", "data.unlabeled=[{images: extra}]", "model.options={width: 8}"],
    )
    text = dump_config(config)
    again = config_from_dict(yaml.safe_load(text), source="dump")
    assert again == config
    assert again.fingerprint() == config.fingerprint()
    assert dump_config(again) == text


def test_override_indexes_a_list():
    from atso.config import apply_overrides

    data = apply_overrides({"data": {"unlabeled": [{"root": "a"}]}}, ["data.unlabeled.0.root=/x"])
    assert data["data"]["unlabeled"][0]["root"] == "/x"
    with pytest.raises(AtsoError, match="not an index"):
        apply_overrides({"data": {"unlabeled": []}}, ["data.unlabeled.0.root=/x"])


def test_volume_section_defaults_and_checks():
    base = {"data": {"kind": "volume", "train": {"root": "/d", "layout": "decathlon", "split": "training"}}}
    config = config_from_dict(base)
    assert config.data.volume.views == ["axial", "coronal", "sagittal"] and config.data.volume.fusion == "majority"
    for bad, message in [
        ({"views": ["axial", "axial"]}, "list each view once"),
        ({"views": ["top"]}, "views"),
        ({"empty_ratio": 1.5}, "empty_ratio"),
        ({"fusion": "max"}, "fusion"),
    ]:
        with pytest.raises(AtsoError, match=message):
            config_from_dict({"data": {**base["data"], "volume": bad}})
    with pytest.raises(AtsoError, match="decathlon split must be training or test"):
        config_from_dict({"data": {"train": {"root": "/d", "layout": "decathlon", "split": "val"}}})


def test_students_augment_as_m0_unless_told_otherwise():
    plain = config_from_dict(_minimal(train={"scale_range": [1.0, 1.0], "blur_probability": 0.1})).train
    assert plain.augmentation(student=True) == plain.augmentation(student=False) == ((1.0, 1.0), 0.1)
    noisy = config_from_dict(_minimal(train={"scale_range": [1.0, 1.0], "student_scale_range": [0.75, 1.5], "student_blur_probability": 0.2})).train
    assert noisy.augmentation(student=False) == ((1.0, 1.0), 0.0)
    assert noisy.augmentation(student=True) == ((0.75, 1.5), 0.2)


def test_test_takes_a_list_of_sources_each_resolved_and_each_checked(tmp_path):
    data = {"data": {
        "train": {"root": "../data", "split": "train"},
        "test": [{"root": "../data", "split": "val"}, {"root": "../data", "split": "train", "include": ["0006R0_f03"]}],
    }}
    config = load_config(_write_config(tmp_path / "configs", data))
    assert [source.split for source in config.data.test] == ["val", "train"]
    assert all(source.root == (tmp_path / "data").resolve() for source in config.data.test)
    assert config.data.test[1].include == ["0006R0_f03"]
    data["data"]["test"][1]["bogus"] = 1
    with pytest.raises(AtsoError, match=r"unknown key 'data\.test\.1\.bogus'"):
        load_config(_write_config(tmp_path / "configs", data))


@pytest.mark.parametrize(
    "section, values, key, words",
    [
        ("train", {"iterations": True}, "train.iterations", "boolean"),
        ("train", {"student_iterations": False}, "train.student_iterations", "boolean"),
        ("train", {"lr": True}, "train.lr", "boolean"),
        ("train", {"lr": float("inf")}, "train.lr", "finite"),
        ("train", {"weight_decay": float("inf")}, "train.weight_decay", "finite"),
        ("train", {"scale_range": [1.0, float("inf")]}, "train.scale_range.1", "finite"),
        ("runtime", {"device": "tpu"}, "runtime.device", "not a device"),
        ("runtime", {"device": "gpu"}, "runtime.device", "not a device"),
    ],
)
def test_booleans_infinities_and_unknown_devices_are_refused(section, values, key, words):
    with pytest.raises(AtsoError, match=rf"'{re.escape(key)}': .*{words}"):
        config_from_dict(_minimal(**{section: values}))


def test_numbers_booleans_and_devices_that_are_fine_still_pass():
    config = config_from_dict(_minimal(train={"iterations": 5, "lr": 1, "hflip": False}, runtime={"device": "cuda:1"}))
    assert config.train.iterations == 5 and config.train.lr == 1.0 and config.train.hflip is False
    assert config.runtime.device == "cuda:1"  # the form is checked here; whether this machine has it, at start


@pytest.mark.parametrize("size, words", [([15, 40], "too small"), ([4097, 40], "at most 4096"), ([100000, 100000], "too large")])
def test_input_size_has_bounds_stated_in_the_error(size, words):
    with pytest.raises(AtsoError, match=rf"'data.input_size': .*{words}"):
        config_from_dict(_minimal(data={"train": {"images": "/i", "masks": "/m"}, "input_size": size}))
    assert config_from_dict(_minimal(data={"train": {"images": "/i", "masks": "/m"}, "input_size": [4096, 16]}))


def test_check_device_knows_what_this_machine_has():
    from atso.config import check_device

    assert check_device("cpu", "--device") == "cpu" and check_device("auto", "--device") == "auto"
    with pytest.raises(AtsoError, match="--device: 'tpu' is not a device"):
        check_device("tpu", "--device")
    with pytest.raises(AtsoError, match="runtime.device: 'cuda:99' asked for but"):
        check_device("cuda:99", "runtime.device")


def test_duplicate_yaml_keys_are_an_error_naming_key_and_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  train: {images: /i, masks: /m}\ntrain:\n  lr: 0.1\n  iterations: 5\n  lr: 0.2\n")
    with pytest.raises(AtsoError, match="config.yaml: duplicate key 'lr' at line 6"):
        load_config(path)
    with pytest.raises(AtsoError, match="--set model.options=.*duplicate key 'depth'"):
        parse_override("model.options={depth: 2, depth: 3}")


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes("data: {train: {images: /caf\u00e9, masks: /m}}\n".encode("latin-1"))
    with pytest.raises(AtsoError, match="config.yaml: config is not UTF-8 text .*save it as UTF-8"):
        load_config(path)

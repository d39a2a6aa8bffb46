"""Super-class pseudo-labels, the super -> full stage, and a source's own label map."""

from __future__ import annotations

import numpy as np
import yaml
from PIL import Image

from atso import api
from atso.config import config_from_dict
from atso.data.images import read_label_map
from atso.running.run_dir import RunDirectory

from conftest import tiny_config


def with_superclasses(root):
    description = yaml.safe_load((root / "shapes.yaml").read_text())
    description["superclasses"] = {"ground": ["background"], "things": ["square", "bar"]}
    (root / "shapes.yaml").write_text(yaml.safe_dump(description))


def test_superclass_labels_and_the_super_to_full_stage(tiny_dataset, tmp_path):
    with_superclasses(tiny_dataset)
    config = tiny_config(tiny_dataset, teacher_student={"pseudo_labels": "super", "super_to_full": True})
    out = tmp_path / "run"
    result = api.run(config_from_dict(config), out, log=lambda line: None, report=False)
    run_dir = RunDirectory(out)
    super_labels = sorted(run_dir.labels_dir("atso-super/g1/labels").glob("*.png"))
    assert len(super_labels) == 8
    values = np.unique(np.concatenate([read_label_map(p, 3).ravel() for p in super_labels]))
    assert set(values.tolist()) <= {0, 1}  # two super-classes
    full_labels = sorted(run_dir.labels_dir("atso-super/to-full/labels").glob("*.png"))
    assert len(full_labels) == 8
    assert run_dir.model_path("atso-super/to-full/model").is_file()
    records = {r["job"]: r for r in result["records"]}
    g1 = records["atso-super/g1/eval"]
    assert g1["granularity"] == "super" and 0 <= g1["reference_super_miou"] <= 1
    assert "reference_miou" not in g1  # super-class labels have no full-class accuracy
    assert 0 <= g1["test_super_miou"] <= 1 and 0 <= g1["test_miou"] <= 1
    assert "to-full" in result["table"]


def test_a_sources_own_description_maps_its_values_and_ignores_the_rest(tiny_dataset, tmp_path):
    # The test split stores its classes shifted by 10 (10, 11, 12) plus a value 40 that maps to nothing.
    for mask_path in sorted((tiny_dataset / "valannot").glob("*.png")):
        mask = np.array(Image.open(mask_path)).astype(np.uint8)
        shifted = np.where(mask == 3, 40, mask + 10).astype(np.uint8)
        Image.fromarray(shifted).save(mask_path)
    target = {"name": "shifted", "classes": ["background", "square", "bar"], "remap": {10: 0, 11: 1, 12: 2},
              "unmapped": "ignore"}
    (tiny_dataset / "target.yaml").write_text(yaml.safe_dump(target))
    config = tiny_config(tiny_dataset, teacher_student={"strategy": "supervised"})
    config["data"]["test"]["description"] = str(tiny_dataset / "target.yaml")
    result = api.run(config_from_dict(config), tmp_path / "run", log=lambda line: None, report=False)
    scores = result["records"][0]["test"]["g0/m0"]
    assert scores["num_pixels"] == 4 * 32 * 40 - 4  # every pixel scored but the unmapped one per image


def test_results_carry_a_super_class_table(tiny_dataset, tmp_path):
    with_superclasses(tiny_dataset)
    config = tiny_config(tiny_dataset, teacher_student={"pseudo_labels": "super"})
    result = api.run(config_from_dict(config), tmp_path / "run", log=lambda line: None, report=False)
    assert result["super_table"] is not None and "atso-super @R" in result["super_table"]

"""Test cases that gained and lost most between M0 and a strategy's final model, drawn as overlays.

The colours are the paper's (Figures 1 and 2), taken over the non-background classes: a class named
``background`` is background; a dataset without one (CamVid) has every class in the foreground.

* yellow: prediction equals the truth (a foreground class);
* red: truth missed: the truth is a foreground class and the prediction is another class or background;
* green: the prediction is a foreground class where the truth is background.

Pixels the truth ignores keep the image's own colour. With more than one foreground class (CamVid's
eleven), yellow alone does not say which class: the truth and each prediction are drawn in the
description's class colours too, beside their error maps, with one legend per report.

The cases shown come from different clips (an image's id up to its first ``_``; each volume is its own)
where there are enough; when a clip must show two, they are far apart in it, not neighbouring frames.

Volumes are scored by foreground DSC per volume, and drawn on the axial slice where the truth and the
two models together show most foreground (the scan's intensities, windowed to their 1st-99th percentile).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from atso.checkpoints import load_model
from atso.data.description import DatasetDescription
from atso.data.images import overlay, read_image, read_mask
from atso.data.samples import Sample
from atso.data.splits import sample_groups
from atso.data.volumes import read_label_volume, read_volume
from atso.inference.predictor import Predictor
from atso.modalities import Modality, for_model

YELLOW = (255, 220, 0)
RED = (230, 30, 30)
GREEN = (30, 200, 30)
BEFORE = "__before__"  # the group name of M0 in predictions


@dataclass
class CaseChange:
    """One test case scored by M0 (``before``) and a final model (``after``), with its drawn tiles."""

    case_id: str
    before: float
    after: float
    tiles: dict[str, np.ndarray] = field(default_factory=dict)  # tile_names(description): HxWx3 uint8

    @property
    def gain(self) -> float:
        return self.after - self.before


def background_class(description: DatasetDescription) -> int | None:
    """The index of a class named 'background' (any case), or None when every class is foreground."""
    for index, name in enumerate(description.classes):
        if name.lower() == "background":
            return index
    return None


def error_overlay(
    image: np.ndarray,
    prediction: np.ndarray,
    truth: np.ndarray,
    background: int | None = None,
    ignore_index: int = 255,
    alpha: float = 0.55,
) -> np.ndarray:
    """Blend yellow (correct), red (truth missed) and green (predicted on background) over an RGB image."""
    if image.shape[:2] != prediction.shape or prediction.shape != truth.shape:
        raise ValueError(f"need matching sizes, got {image.shape}, {prediction.shape} and {truth.shape}")
    scored = truth != ignore_index
    truth_fg = scored & (truth != background if background is not None else True)
    prediction_fg = prediction != background if background is not None else np.ones_like(scored)
    correct = truth_fg & (prediction == truth)
    colours = np.zeros(image.shape, dtype=np.float64)
    painted = np.zeros(truth.shape, dtype=bool)
    for mask, colour in ((correct, YELLOW), (truth_fg & ~correct, RED), (scored & ~truth_fg & prediction_fg, GREEN)):
        colours[mask] = colour
        painted |= mask
    blended = image.astype(np.float64)
    blended[painted] = (1 - alpha) * blended[painted] + alpha * colours[painted]
    return np.rint(blended).clip(0, 255).astype(np.uint8)


def score_cases(
    predictor: Predictor, samples: list[Sample], groups: dict[str, list[str]], modality: Modality
) -> dict[str, dict[str, float]]:
    """Per-case mIoU (volumes: foreground DSC) of each group of models on samples with masks.

    Cases with nothing scored are left out.
    """
    description = modality.description
    scores = {group: modality.scores(description.classes, description.ignore_index) for group in groups}
    for sample, predictions in predictor.predict(samples, groups, desc="report: scoring test cases"):
        shape = next(iter(predictions.values())).labels.shape
        truth = modality.read_truth(sample, description, shape)
        for group, prediction in predictions.items():
            scores[group].add_case(prediction.labels, truth, sample.id)
    key = modality.case_score
    return {
        group: {case["case_id"]: case[key] for case in s.summary()["cases"] if case[key] is not None}
        for group, s in scores.items()
    }


def _volume_slice(sample: Sample, predictions: dict[str, np.ndarray], description: DatasetDescription):
    """The axial slice (image as grey RGB, truth, predictions) where the foreground is largest."""
    volume = read_volume(sample.image)
    truth = read_label_volume(sample.mask, description, volume.shape).data  # type: ignore[arg-type]
    background = background_class(description)
    foreground = truth != (background if background is not None else -1)
    for labels in predictions.values():
        foreground = foreground | (labels != (background if background is not None else -1))
    z = int(np.argmax(foreground.sum(axis=(0, 1))))
    image = volume.data[:, :, z]
    low, high = np.percentile(image, [1, 99])
    grey = np.clip((image - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2), truth[:, :, z], {n: p[:, :, z] for n, p in predictions.items()}


def tile_names(description: DatasetDescription) -> list[str]:
    """The tiles drawn per case: with several foreground classes, truth and predictions in class colours too."""
    if len(description.classes) - (background_class(description) is not None) > 1:
        return ["image", "truth", "before_classes", "before_errors", "after_classes", "after_errors"]
    return ["image", "before_errors", "after_errors"]  # one class: the error map shows truth and prediction


def class_view(image: np.ndarray, labels: np.ndarray, description: DatasetDescription) -> np.ndarray:
    """Labels in opaque class colours (those of the legend); background and ignored pixels show the image."""
    background = background_class(description)
    shown = np.where(labels == background, description.ignore_index, labels) if background is not None else labels
    return overlay(image, shown, description.color_palette(), alpha=1.0, ignore_index=description.ignore_index)


def draw_case(
    sample: Sample,
    predictions: dict[str, np.ndarray],
    description: DatasetDescription,
    max_side: int = 320,
    min_side: int = 160,
) -> dict[str, np.ndarray]:
    """The tiles of :func:`tile_names` for ``before`` and ``after`` predictions, ``min_side``..``max_side`` wide."""
    first = next(iter(predictions.values()))
    if first.ndim == 3:
        image, truth, predictions = _volume_slice(sample, predictions, description)
    else:
        image = read_image(sample.image)
        truth = read_mask(sample.mask, description, expected_size=image.shape[:2])  # type: ignore[arg-type]
    background = background_class(description)
    tiles = {"image": image, "truth": class_view(image, truth, description)}
    for name, labels in predictions.items():
        tiles[f"{name}_classes"] = class_view(image, labels, description)
        tiles[f"{name}_errors"] = error_overlay(image, labels, truth, background, description.ignore_index)
    return {name: _fit(tiles[name], min_side, max_side) for name in tile_names(description)}


def class_legend(description: DatasetDescription) -> np.ndarray:
    """A swatch and the name of each class in class order (background, shown as the image, left out)."""
    font = ImageFont.load_default()
    background = background_class(description)
    palette = description.color_palette()
    entries = [(name, palette[index]) for index, name in enumerate(description.classes) if index != background]
    swatch, pad = 14, 6
    width = max(int(font.getlength(name)) for name, _ in entries) + swatch + 3 * pad
    per_row = max(1, min(len(entries), 900 // width))
    rows = -(-len(entries) // per_row)
    legend = Image.new("RGB", (per_row * width, rows * (swatch + pad) + pad), "white")
    draw = ImageDraw.Draw(legend)
    for index, (name, colour) in enumerate(entries):
        x, y = (index % per_row) * width + pad, (index // per_row) * (swatch + pad) + pad
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=tuple(colour), outline=(90, 90, 90))
        top, bottom = draw.textbbox((0, 0), name, font=font)[1::2]  # no anchor: Pillow 10's bitmap font has none
        draw.text((x + swatch + pad, y + (swatch - top - bottom) // 2), name, fill=(20, 20, 20), font=font)
    return np.asarray(legend)


def _fit(tile: np.ndarray, min_side: int, max_side: int) -> np.ndarray:
    """Shrink large tiles smoothly; enlarge tiny ones by whole pixels, so their labels stay crisp."""
    height, width = tile.shape[:2]
    longest = max(height, width)
    if longest > max_side:
        scale = max_side / longest
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return np.asarray(Image.fromarray(tile).resize(size, Image.Resampling.LANCZOS))
    if longest < min_side:
        factor = -(-min_side // longest)
        return np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)
    return tile


def evenly_spaced(samples: list[Sample], limit: int) -> list[Sample]:
    """At most ``limit`` samples spread over the list (a video's frames, not just its first seconds)."""
    if len(samples) <= limit:
        return list(samples)
    picks = np.linspace(0, len(samples) - 1, limit).round().astype(int)
    return [samples[i] for i in sorted(set(picks.tolist()))]


def pick_cases(changes: list[CaseChange], clips: dict[str, str], count: int) -> dict[str, list[CaseChange]]:
    """Up to ``count`` cases with gain > 0 (``gained``) and with gain < 0 (``lost``), largest change first.

    Args:
        changes: every scored case.
        clips: case id -> its clip (:func:`atso.data.splits.sample_groups` by the modality's
            ``case_grouping``: a video's frames share their sequence, a volume is its own); a case missing
            here is a clip of its own.
        count: cases per direction.
    """
    clip_of = {change.case_id: clips.get(change.case_id, change.case_id) for change in changes}
    members: dict[str, list[str]] = {}
    for case_id in sorted(clip_of):
        members.setdefault(clip_of[case_id], []).append(case_id)
    position = {case_id: index for ids in members.values() for index, case_id in enumerate(ids)}
    gap = {clip: max(2, len(ids) // (2 * count + 1)) for clip, ids in members.items()}
    ranked = sorted(changes, key=lambda change: (-change.gain, change.case_id))

    def spread(candidates: list[CaseChange]) -> list[CaseChange]:
        """Each clip's best first; a clip picked again needs max(2, len(clip) // (2 * count + 1)) frames between."""
        picks: list[CaseChange] = []
        for change in candidates:
            if len(picks) < count and all(clip_of[p.case_id] != clip_of[change.case_id] for p in picks):
                picks.append(change)
        for change in candidates:
            clip = clip_of[change.case_id]
            far = all(
                abs(position[p.case_id] - position[change.case_id]) >= gap[clip]
                for p in picks
                if clip_of[p.case_id] == clip
            )
            if len(picks) < count and far:  # a case already picked is 0 frames from itself: not far
                picks.append(change)
        return sorted(picks, key=candidates.index)

    return {
        "gained": spread([change for change in ranked if change.gain > 0]),
        "lost": spread([change for change in reversed(ranked) if change.gain < 0]),
    }


def compare_cases(
    before_model: Path,
    after_models: dict[str, list[Path]],
    samples: list[Sample],
    description: DatasetDescription,
    predictor_options: dict,
    count: int = 2,
    per_case: dict[str, dict[str, float]] | None = None,
) -> dict[str, dict[str, list[CaseChange]]]:
    """For each strategy, up to ``count`` cases that gained most and lost most from M0 to its final model.

    Args:
        before_model: M0's model file.
        after_models: strategy -> its final model file(s) (several are scored as their ensemble).
        samples: test samples with masks.
        description: the label space.
        predictor_options: ``device``, ``input_size`` and optionally ``batch_size``, ``quiet``.
        count: cases shown per direction.
        per_case: each group's score per case when already known (``BEFORE`` and each strategy);
            then only the cases shown are predicted.

    Returns:
        strategy -> ``{"gained": [...], "lost": [...]}`` (:func:`pick_cases`), with tiles drawn.
    """
    device = predictor_options["device"]
    names: dict[Path, str] = {before_model: BEFORE}
    for paths in after_models.values():
        for path in paths:
            names.setdefault(path, f"model-{len(names)}")
    loaded = {name: load_model(path, device) for path, name in names.items()}
    models = {name: model for name, (model, _) in loaded.items()}
    groups = {BEFORE: [BEFORE]}
    groups.update({strategy: [names[p] for p in paths] for strategy, paths in after_models.items()})
    batch_size, quiet = predictor_options.get("batch_size", 8), predictor_options.get("quiet", False)
    modality = for_model(loaded[BEFORE][1], description)
    predictor = modality.file_predictor(models, loaded[BEFORE][1], device, batch_size, predictor_options["input_size"], quiet)
    if per_case is None:
        per_case = score_cases(predictor, samples, groups, modality)
    clips = sample_groups(samples, modality.case_grouping)
    chosen: dict[str, dict[str, list[CaseChange]]] = {}
    for strategy in after_models:
        common = [c for c in per_case[BEFORE] if c in per_case[strategy]]
        changes = [CaseChange(c, per_case[BEFORE][c], per_case[strategy][c]) for c in common]
        chosen[strategy] = pick_cases(changes, clips, count)
    shown = {change.case_id for picks in chosen.values() for group in picks.values() for change in group}
    drawn = [s for s in samples if s.id in shown]
    for sample, predictions in predictor.predict(drawn, groups, desc="report: drawing cases"):
        for strategy, picks in chosen.items():
            for change in picks["gained"] + picks["lost"]:
                if change.case_id == sample.id:
                    labels = {"before": predictions[BEFORE].labels, "after": predictions[strategy].labels}
                    change.tiles = draw_case(sample, labels, description)
    return chosen

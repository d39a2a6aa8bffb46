"""The model, train and teacher_student sections: the network, the recipe, the strategy and its pseudo-labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from atso.config.base import Float, Int, _Section


class ModelConfig(_Section):
    """A network from the registry (``atso.models.available_models()``) and its options."""

    name: str = "small_unet"
    options: dict[str, Any] = Field(default_factory=dict)
    pretrained: Path | None = Field(
        default=None, description="a model.pt of an earlier atso run that M0 starts from (fine-tuning), instead of from scratch"
    )


class StrongAugmentationConfig(_Section):
    """Students' strong view of pseudo-labeled samples; M0 and ground-truth samples keep the weak pipeline.

    Images get colour jitter, grayscale and blur; volume slices (MRI, CT) get intensity gain, bias,
    gamma and noise. CutMix between pseudo-labeled samples is ``train.mix``. Without this perturbation a
    student fed its teacher's labels on the teacher's own inputs learns to copy them (lazy mimicking).
    """

    enabled: bool = Field(default=True, description="perturb pseudo-labeled samples of students")
    jitter: Float = Field(default=0.5, ge=0, le=1, description="images: brightness/contrast/saturation in [1-j, 1+j], hue +-j/2")
    jitter_probability: Float = Field(default=0.8, ge=0, le=1, description="images: chance of colour jitter")
    grayscale_probability: Float = Field(default=0.2, ge=0, le=1, description="images: chance of grayscale")
    blur_probability: Float = Field(default=0.5, ge=0, le=1, description="images: chance of a Gaussian blur")
    gain: Float = Field(default=0.25, ge=0, lt=1, description="slices: intensity factor in [1-g, 1+g]")
    bias: Float = Field(default=0.25, ge=0, description="slices: intensity offset in [-b, b] standard deviations")
    gamma: tuple[Float, Float] = Field(default=(0.7, 1.5), description="slices: power of the [0, 1]-rescaled slice")
    noise: Float = Field(default=0.1, ge=0, description="slices: Gaussian noise of up to this many standard deviations")
    intensity_probability: Float = Field(default=0.8, ge=0, le=1, description="slices: chance of each intensity change")

    @model_validator(mode="after")
    def _check_gamma(self) -> "StrongAugmentationConfig":
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError("gamma must be (low, high) with 0 < low <= high, e.g. [0.7, 1.5]")
        return self


class TrainConfig(_Section):
    """The paper's recipe: SGD with momentum, poly learning rate, cross-entropy with ignore."""

    iterations: Int = Field(default=1000, ge=1, description="iterations for M0 (from scratch)")
    student_iterations: Int | None = Field(default=None, ge=1, description="iterations per student; default: iterations")
    batch_size: Int = Field(default=8, ge=1)
    lr: Float = Field(default=0.01, gt=0)
    student_lr: Float | None = Field(default=None, gt=0, description="learning rate for students; default: lr")
    momentum: Float = Field(default=0.9, ge=0, lt=1)
    weight_decay: Float = Field(default=1e-4, ge=0)
    poly_power: Float = Field(default=0.9, ge=0)
    scale_range: tuple[Float, Float] = Field(default=(0.75, 1.5), description="random rescale before the crop")
    hflip: bool = True
    blur_probability: Float = Field(default=0.0, ge=0, le=1)
    # A noisier student than its teacher (Noisy Student): students may rescale and blur more than M0.
    student_scale_range: tuple[Float, Float] | None = Field(default=None, description="students' rescale range; default: scale_range")
    student_blur_probability: Float | None = Field(default=None, ge=0, le=1, description="students' blur probability; default: blur_probability")
    seed: Int = 0
    checkpoint_every: Int = Field(default=100, ge=1)
    mix: Literal["none", "cutmix", "classmix"] = Field(
        default="cutmix", description="students: paste a box (cutmix) or half the classes (classmix) between pseudo-labeled samples"
    )
    mix_probability: Float = Field(default=0.5, ge=0, le=1, description="students: chance that a pseudo-labeled sample is mixed")
    strong: StrongAugmentationConfig = Field(
        default_factory=StrongAugmentationConfig, description="students: the strong view of pseudo-labeled samples"
    )
    labeled_share: Float | None = Field(
        default=0.5, gt=0, lt=1,
        description="students: share of each batch drawn from S, the rest from pseudo-labels; null pools S and R",
    )

    @model_validator(mode="after")
    def _check_scale(self) -> "TrainConfig":
        for name in ("scale_range", "student_scale_range"):
            value = getattr(self, name)
            if value is not None and not 0 < value[0] <= value[1]:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high")
        return self

    def augmentation(self, student: bool) -> tuple[tuple[float, float], float]:
        """The rescale range and blur probability of M0 (``student`` False) or of a student."""
        if not student:
            return self.scale_range, self.blur_probability
        scale = self.student_scale_range if self.student_scale_range is not None else self.scale_range
        blur = self.student_blur_probability if self.student_blur_probability is not None else self.blur_probability
        return scale, blur


def _registered_strategies() -> tuple[str, ...]:
    from atso.strategies.registry import strategy_names  # the one list of strategies (plans sit below config)

    return strategy_names()


class ReliabilityConfig(_Section):
    """ST++'s image-level selection (Yang et al., CVPR 2022): students learn from the reliable part of R first.

    Every model keeps ``snapshots`` earlier checkpoints (at 1/(n+1), 2/(n+1), ... of its training). A
    pseudo-labeled sample's reliability is the mean IoU between its teacher's final prediction and each
    earlier checkpoint's: labels the teacher kept changing its mind about are the likeliest wrong. A
    student trains on S plus the most reliable ``share`` of each fold for ``first_iterations`` of its
    schedule, then on S plus all of R.
    """

    enabled: bool = Field(default=False, description="rank pseudo-labeled samples by stability and train on the stable ones first")
    snapshots: Int = Field(default=2, ge=1, le=8, description="earlier checkpoints each model keeps for the ranking")
    share: Float = Field(default=0.5, gt=0, le=1, description="the most reliable share of each pseudo-labeled fold trained on first")
    first_iterations: Float = Field(
        default=0.5, gt=0, le=1, description="share of a student's iterations on S plus that share alone (1: never all of R)"
    )


class TeacherStudentConfig(_Section):
    """Which strategy, how many generations and reference folds, and how pseudo-labels are made."""

    strategy: str = Field(default="atso", description="a registered strategy (atso.strategies.registry)")
    generations: Int = Field(default=3, ge=0)
    folds: Int = Field(default=2, ge=2)
    fold_groups: Literal["sample", "listed", "sequence", "blocks"] = Field(
        default="sample",
        description=(
            "what the fold split keeps together: each sample (a volume is its own group), the groups a list "
            "file names (group=NAME after the paths), each sequence "
            "(the id up to fold_separator), or blocks of fold_block_size consecutive frames of a sequence"
        ),
    )
    fold_block_size: Int = Field(default=20, ge=1, description="frames per block, with fold_groups: blocks")
    fold_separator: str = Field(default="_", min_length=1, description="ends a sequence name in a sample id (0016E5_07959)")
    confidence_threshold: Float | None = Field(default=None, ge=0, le=1)
    class_balanced_keep: Float | None = Field(
        default=None, gt=0, le=1,
        description="keep each class's most confident share of pseudo-labeled pixels, ignore the rest (class-balanced)",
    )
    label_flip: bool = Field(default=False, description="teachers label with the mean of the image and its mirror image")
    reliability: ReliabilityConfig = Field(
        default_factory=ReliabilityConfig, description="ST++ selection: train on the teacher's stable pseudo-labels first"
    )
    final_labels: Literal["cross", "last"] = Field(
        default="cross",
        description="ATSO final model: 'cross' = folds relabeled by the last students; 'last' = the labels they trained on",
    )
    pseudo_labels: Literal["full", "super"] = Field(
        default="full", description="pseudo-labels of full classes, or of the description's superclasses"
    )
    super_to_full: bool = Field(default=False, description="after super-class generations, fine-tune on full-class labels")
    compare_strategies: list[str] = Field(
        default_factory=lambda: list(_registered_strategies()), description="what 'atso compare' runs"
    )
    compare_pseudo_labels: list[Literal["full", "super"]] = Field(
        default_factory=lambda: ["full"], description="pseudo-label granularities 'atso compare' runs"
    )

    @field_validator("strategy", "compare_strategies")
    @classmethod
    def _registered(cls, value: str | list[str]) -> str | list[str]:
        names = _registered_strategies()
        for name in [value] if isinstance(value, str) else value:
            if name not in names:
                raise ValueError(f"Input should be {', '.join(repr(n) for n in names[:-1])} or {names[-1]!r}")
        return value

    @model_validator(mode="after")
    def _one_selection(self) -> "TeacherStudentConfig":
        if self.confidence_threshold is not None and self.class_balanced_keep is not None:
            raise ValueError("set confidence_threshold or class_balanced_keep, not both")
        return self


class EvaluationConfig(_Section):
    """Inference settings for labeling and scoring."""

    batch_size: Int = Field(default=8, ge=1)
    flip: bool = Field(default=False, description="average predictions with the horizontally flipped image")

"""The building blocks of every config section: no unknown keys, finite floats, numbers that are not booleans."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _not_a_boolean(value: Any) -> Any:
    """YAML's ``true`` is Python's 1: refuse it where a number is expected, instead of training 1 iteration."""
    if isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)):
        raise ValueError(f"{str(value).lower()} is a boolean, not a number; give a number")
    return value


Int = Annotated[int, BeforeValidator(_not_a_boolean)]
Float = Annotated[float, BeforeValidator(_not_a_boolean)]


class _Section(BaseModel):
    # Floats are finite: '.inf' as a learning rate would otherwise pass 'gt=0' and stop later as a NaN loss.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

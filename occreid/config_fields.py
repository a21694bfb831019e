"""The building blocks of every config section: the core sections (occreid.config) and each method's own
(occreid/methods/<name>/config.py). Strict types: an int field takes an integer, a bool field true/false."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


# Tuples are written as YAML lists (and dumped as lists by `to_yaml`); strict mode alone would refuse a list.
LIST_AS_TUPLE = BeforeValidator(lambda value: tuple(value) if isinstance(value, list) else value)
Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


def at_least_two(what: str):
    def check(value: int) -> int:
        if value < 2:
            raise ValueError(
                f"must be >= 2: the batch-hard triplet loss needs at least 2 {what}, "
                "else it is 0 on every step"
            )
        return value

    return check

"""Time distributions a scenario may use, and fast seeded samplers for them.

Every parameter that is a time is a `Duration`: a number of seconds or a string with a unit
("12 s", "1.5 min", "8 h", "2 d"), so plant engineers can write times the way they think of them.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from twin.tables import with_decimal_point

_UNITS = {  # the short units, and as people write them out ('30 hours', '2 weeks')
    "ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0, "day": 86400.0,
    "w": 604800.0, "wk": 604800.0, "week": 604800.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "mins": 60.0,
    "minute": 60.0, "minutes": 60.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0, "days": 86400.0,
    "weeks": 604800.0,
}
_DURATION_RE = re.compile(
    r"[ \t\n\r]*([-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9]+)[ \t\n\r]*([a-z]*)[ \t\n\r]*")


def bare_number(value: str) -> bool:
    """Whether a positive duration is written without its unit: seconds in a scenario file, a likely mistake on the
    command line ('--duration 8' meant hours). 0 needs none; a negative one is refused as negative."""
    m = _DURATION_RE.fullmatch(value.lower())
    return m is not None and not m.group(2) and float(m.group(1)) > 0


def parse_duration(value: Any) -> Any:
    """Turn "8 h" / "90s" / 12 into seconds; leave anything else for pydantic to reject clearly."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        if value.strip(" \t\n\r").startswith("-"):
            raise ValueError(f"a time cannot be negative, got {value!r}")
        m = _DURATION_RE.fullmatch(value.lower())
        if not m:
            parts = re.fullmatch(r"\s*(\S*?)\s*([a-z]*)\s*", value.lower())  # '1,5 h': a number, its unit
            point = with_decimal_point(parts[1]) if parts else None
            raise ValueError(f"not a duration: {value!r}; " + (
                f"write it with a decimal point, {point}{f' {parts[2]}' if parts and parts[2] else ''}" if point
                else "write a number of seconds or e.g. '90 s', '5 min', '8 h'"))
        unit = m.group(2) or "s"
        if unit not in _UNITS:
            raise ValueError(f"unknown time unit {unit!r} in {value!r}; allowed: ms, s, min, h, d, w (or written "
                             "out: seconds, minutes, hours, days, weeks)")
        seconds = float(m.group(1)) * _UNITS[unit]
        if not math.isfinite(seconds):  # '1e400' reads as inf
            raise ValueError(f"not a duration: {value!r} is beyond any time a line runs; write e.g. '30 d'")
        return seconds
    return value


_UNIT_PATTERN = "|".join("".join(f"[{c}{c.upper()}]" for c in u) for u in sorted(_UNITS, key=len, reverse=True))
_SPACE = r"[ \t\n\r]"
_NUMBER_PATTERN = r"([0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?|\.[0-9]+)"


def duration_schema(minimum: float = 0.0, exclusive: bool = False, maximum: float | None = None) -> dict[str, Any]:
    """The JSON Schema of a time: a number of seconds in range, or a string with a unit that `parse_duration` takes.
    A string's range is checked only by the validator (JSON Schema cannot compare '90 s' with a bound)."""
    number: dict[str, Any] = {"type": "number", ("exclusiveMinimum" if exclusive else "minimum"): minimum}
    if maximum is not None:
        number["maximum"] = maximum
    positive = rf"(?={_SPACE}*\+?0*\.?0*[1-9])" if exclusive or minimum > 0 else ""
    text = {"type": "string",
            "pattern": rf"^{positive}{_SPACE}*\+?{_NUMBER_PATTERN}{_SPACE}*({_UNIT_PATTERN})?{_SPACE}*$",
            "examples": ["90 s", "5 min", "8 h", "2 d"]}
    return {"anyOf": [number, text]}


def duration(gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:
    """A time field's type: seconds or a unit string, in range, finite; with a JSON Schema editors can use."""
    return Annotated[float, BeforeValidator(parse_duration), Field(gt=gt, ge=ge, le=le, allow_inf_nan=False),
                     WithJsonSchema(duration_schema(gt if gt is not None else ge or 0.0, gt is not None, le))]


PositiveDuration = duration(gt=0)
NonNegDuration = duration(ge=0)


class _Dist(BaseModel, ABC):
    """What every distribution offers: its mean (for ideal cycle times) and a block of draws."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @property
    @abstractmethod
    def mean(self) -> float: ...

    @abstractmethod
    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray: ...

    @property
    def lower_bound(self) -> float | None:
        """The shortest time a draw can take when that is above 0 (a design cycle for OEE), else None."""
        return None


class Constant(_Dist):
    """Always the same time (e.g. a machine with a fixed cycle)."""

    dist: Literal["constant"]
    value: NonNegDuration

    @property
    def mean(self) -> float:
        return self.value

    @property
    def lower_bound(self) -> float | None:
        return self.value or None

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value)


class _ByMean(_Dist):
    """A distribution given by its mean (and maybe more)."""

    mean_: PositiveDuration = Field(alias="mean", description="mean time")

    @property
    def mean(self) -> float:
        return self.mean_


class Exponential(_ByMean):
    """Memoryless times: random arrivals, sudden failures (MTBF)."""

    dist: Literal["exponential"]

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean_, n)


#: the share of draws a 'practical' lower bound leaves below it (the 3-sigma point of a normal distribution)
TAIL = 0.00135


#: the largest spread a time's sd may have relative to its mean (a repair of 40 min ± 3 days is already 110)
MAX_CV = 1000.0


class _BySpread(_ByMean):
    """A distribution given by the mean and sd of the time itself, the sd within MAX_CV times the mean (a larger
    spread is a typo, and its log-variance overflows)."""

    sd: NonNegDuration

    @model_validator(mode="after")
    def _spread(self) -> _BySpread:
        if self.sd > MAX_CV * self.mean_:
            raise ValueError(f"sd {self.sd:g} s is more than {MAX_CV:g} times the mean ({self.mean_:g} s); check the "
                             "units (e.g. '15 min', not 15 h)")
        return self


class Normal(_BySpread):
    """Normal times truncated at 0 (negative draws are redrawn)."""

    dist: Literal["normal"]

    @property
    def lower_bound(self) -> float | None:
        """Three sd below the mean (99.87 % of draws are longer), when that is above 0."""
        low = self.mean_ - 3 * self.sd
        return low if low > 0 else None

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.normal(self.mean_, self.sd, n)
        bad = x < 0
        while bad.any():
            x[bad] = rng.normal(self.mean_, self.sd, int(bad.sum()))
            bad = x < 0
        return x


class LogNormal(_BySpread):
    """Right-skewed positive times (repairs), given by the mean and sd of the time itself."""

    dist: Literal["lognormal"]

    @property
    def lower_bound(self) -> float | None:
        """The point 3 sigma below the log-mean (99.87 % of draws are longer)."""
        sigma = math.sqrt(math.log1p((self.sd / self.mean_) ** 2))
        return math.exp(math.log(self.mean_) - sigma**2 / 2 - 3 * sigma)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sigma2 = math.log1p((self.sd / self.mean_) ** 2)
        mu = math.log(self.mean_) - sigma2 / 2
        return rng.lognormal(mu, math.sqrt(sigma2), n)


class Triangular(_Dist):
    """Times an engineer estimates as min / most likely / max."""

    dist: Literal["triangular"]
    low: NonNegDuration
    mode: NonNegDuration
    high: NonNegDuration

    @model_validator(mode="after")
    def _ordered(self) -> Triangular:
        if not self.low <= self.mode <= self.high or self.low == self.high:
            raise ValueError(f"need low <= mode <= high and low < high, got {self.low}, {self.mode}, {self.high}")
        return self

    @property
    def mean(self) -> float:
        return (self.low + self.mode + self.high) / 3

    @property
    def lower_bound(self) -> float | None:
        return self.low or None

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.triangular(self.low, self.mode, self.high, n)


class Uniform(_Dist):
    """Any time between low and high, equally likely."""

    dist: Literal["uniform"]
    low: NonNegDuration
    high: NonNegDuration

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"need low < high, got low={self.low}, high={self.high}")
        return self

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @property
    def lower_bound(self) -> float | None:
        return self.low or None

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, n)


class Weibull(_Dist):
    """Wear-out lifetimes: shape > 1 gives a rising failure hazard."""

    dist: Literal["weibull"]
    shape: float = Field(ge=0.05, le=100, allow_inf_nan=False,
                         description="beta, 0.05 to 100; > 1 means wear-out (below 0.05 the mean overflows)")
    scale: PositiveDuration = Field(description="eta, the characteristic life")

    @property
    def mean(self) -> float:
        return self.scale * math.gamma(1 + 1 / self.shape)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.scale * rng.weibull(self.shape, n)


class Gamma(_Dist):
    """Positive times between exponential (shape 1) and near-normal (large shape): repair and cycle times."""

    dist: Literal["gamma"]
    shape: float = Field(ge=0.05, le=1000, allow_inf_nan=False, description="k, 0.05 to 1000")
    scale: PositiveDuration = Field(description="theta; the mean is shape × scale")

    @property
    def mean(self) -> float:
        return self.shape * self.scale

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.gamma(self.shape, self.scale, n)


class Empirical(_Dist):
    """Resample measured times (e.g. from a time study) with equal weight."""

    dist: Literal["empirical"]
    values: list[NonNegDuration] = Field(min_length=1)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def lower_bound(self) -> float | None:
        return min(self.values) or None

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(np.asarray(self.values, dtype=float), n)


DIST_TAGS = ("constant", "exponential", "normal", "lognormal", "triangular", "uniform", "weibull", "gamma", "empirical")


def _shorthand(value: Any) -> Any:
    """A bare time ("12 s" or 12) means a constant time."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return {"dist": "constant", "value": value}
    return value


_Tagged = Annotated[
    Union[Constant, Exponential, Normal, LogNormal, Triangular, Uniform, Weibull, Gamma, Empirical],
    Field(discriminator="dist"),
]
#: a distribution, or a bare time meaning a constant one (the JSON Schema offers both, as the validator takes both)
Distribution = Annotated[_Tagged, BeforeValidator(_shorthand, json_schema_input_type=Union[NonNegDuration, _Tagged])]


def residual(dist: _Dist, rng: np.random.Generator, elapsed: float, tries: int = 64) -> float:
    """A draw of X - elapsed given X > elapsed: what is left of a life or a repair that has lasted `elapsed` already
    (rejection in blocks of 1,024). 0 when the law leaves almost no chance (< 1 in 65,536) of lasting that long: the
    thing ends now."""
    if elapsed <= 0:
        return float(dist.draw(rng, 1)[0])
    for _ in range(tries):
        xs = dist.draw(rng, 1024)
        left = xs[xs > elapsed]
        if left.size:
            return float(left[0] - elapsed)
    return 0.0


def residual_in_service(dist: _Dist, rng: np.random.Generator, elapsed: float, tries: int = 64) -> tuple[float, float]:
    """(age, what is left) of a life watched for `elapsed` without ending, that was already under way when the
    watching began, at a uniform point of its length (a line in service, as `start_age: random` starts one): the
    life drawn, and where it stood then, given that it lasted the `elapsed` since (rejection in blocks of 1,024).
    (elapsed, 0) when that leaves almost no chance: the thing ends now."""
    for _ in range(tries):
        life, u = dist.draw(rng, 1024), rng.random(1024)
        ok = np.flatnonzero(life * (1.0 - u) > elapsed)
        if ok.size:
            k = ok[0]
            return float(u[k] * life[k] + elapsed), float(life[k] * (1.0 - u[k]) - elapsed)
    return elapsed, 0.0


def scaled(dist: _Dist, factor: float) -> _Dist:
    """The same law with every time multiplied by `factor` (shapes kept): its mean times `factor` (a faster or slower
    machine in a what-if)."""
    data = dist.model_dump(by_alias=True)
    return type(dist).model_validate({k: v if k in ("dist", "shape") else [x * factor for x in v]
                                      if isinstance(v, list) else v * factor for k, v in data.items()})


class Sampler:
    """Draws from one distribution with its own generator, in blocks of `block` drawn when the last one is used
    up. `take` is the draw as a C-level callable (the next item of a chain over the blocks): a per-event loop
    calls it without a Python frame; calling the sampler does the same."""

    __slots__ = ("_block", "_dist", "_rng", "take")

    def __init__(self, dist: _Dist, rng: np.random.Generator, block: int = 512) -> None:
        self._dist, self._rng, self._block = dist, rng, block
        self.take: Callable[[], float] = chain.from_iterable(self._blocks()).__next__

    def _blocks(self) -> Iterator[list[float]]:
        while True:
            yield self._dist.draw(self._rng, self._block).tolist()

    def __call__(self) -> float:
        return self.take()

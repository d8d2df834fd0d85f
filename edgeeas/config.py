"""Schemas of the user's configuration files, checked up front (pydantic).

A config file is validated as a whole before any work: a wrong type or value anywhere
(``max_accuracy_gap: lots``, ``recal_images: -5``) is one line naming the file, the line, the
field and what was expected, instead of a traceback minutes later when the value is used::

    deploy.yaml, line 7: recal_images: Input should be greater than 0 (got -5)

:func:`load_config` reads a YAML file with :func:`edgeeas.utils.read_yaml`'s errors, finds the
line of every key and list item, and validates it against a pydantic model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, ValidationError, \
    field_validator, model_validator

from .errors import EdgeeasUsageError

__all__ = ["ConfigError", "DeployConfig", "DeployScenario", "FarmConfig", "FarmDevice", "FarmModel", "FarmEval",
           "load_config", "validate_config"]


class ConfigError(EdgeeasUsageError):
    """A config file that does not follow its schema (one line, with the line number)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeployScenario(_Strict):
    """One scenario of ``deploy.yaml``: ``superclass`` (or ``superclasses``) and ``budget``."""

    superclass: Optional[str] = None
    superclasses: Optional[list[str]] = Field(default=None, min_length=1)
    budget: Union[str, int, float]

    @field_validator("budget")
    @classmethod
    def _budget(cls, v):
        from .search.budget import parse_budget

        return str(parse_budget(str(v)))  # a bad budget fails here, with the budget form

    @model_validator(mode="after")
    def _one_group(self):
        if (self.superclass is None) == (self.superclasses is None):
            raise ValueError("give 'superclass: NAME' or 'superclasses: [NAME, ...]' (one of them)")
        return self

    def names(self) -> list[str]:
        """The scenario's superclass names (one or several)."""
        return [self.superclass] if self.superclass is not None else list(self.superclasses)


class DeployConfig(_Strict):
    """``deploy.yaml`` (see ``deploy.example.yaml`` and :mod:`edgeeas.deploy`)."""

    target: Optional[str] = None
    strategy: str = "generator"
    scenarios: list[DeployScenario] = Field(min_length=1)
    supernet: Optional[str] = None
    generator: Optional[str] = None
    data: Optional[str] = None
    out: Optional[str] = None
    remote_dir: Optional[str] = None
    local_dir: Optional[str] = None
    adb_serial: Optional[str] = None
    max_accuracy_gap: Optional[NonNegativeFloat] = None
    min_agreement: Optional[Annotated[float, Field(ge=0, le=100)]] = None
    recal_images: Optional[PositiveInt] = None
    calib_images: Optional[PositiveInt] = None
    latency_margin: Optional[Union[str, float]] = None

    @field_validator("latency_margin")
    @classmethod
    def _margin(cls, v):
        from .search.budget import parse_margin

        if v is not None:
            parse_margin(v)
        return v


def _protocol_fields(v):
    """A farm's ``protocol:`` mapping, checked by building a :class:`device_bench.Protocol` from it."""
    from device_bench import Protocol

    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError("must be a mapping of measurement protocol fields, e.g. {threads: 1, num_runs: 50}")
    try:
        Protocol.from_dict(dict(v))
    except (TypeError, ValueError) as e:
        raise ValueError(str(e)) from None
    return dict(v)


class FarmDevice(_Strict):
    """A ``devices:`` entry in mapping form: ``{name: board, serial: 10.0.0.5:5555, protocol: {...}}``."""

    name: Optional[str] = Field(default=None, min_length=1)
    serial: Optional[str] = Field(default=None, min_length=1)
    protocol: Optional[dict] = None
    python: Optional[str] = None
    benchmark_binary: Optional[str] = None

    _proto = field_validator("protocol")(classmethod(lambda cls, v: _protocol_fields(v)))

    @field_validator("name", "serial", mode="before")
    @classmethod
    def _text(cls, v):
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _named(self):
        if not (self.name or self.serial):
            raise ValueError("a device needs `name` and/or `serial`")
        return self


class FarmModel(_Strict):
    """A ``models:`` entry in mapping form: ``{name: tiny, path: models/tiny.tflite}``."""

    name: Optional[str] = Field(default=None, min_length=1)
    path: str = Field(min_length=1)


class FarmEval(_Strict):
    """``eval:`` of ``farm.yaml``: the evaluation inputs (counts and a seed)."""

    seed: NonNegativeInt = 0
    random_inputs: PositiveInt = 64
    max_images: NonNegativeInt = 0


class FarmConfig(_Strict):
    """``farm.yaml`` (see :mod:`edgeeas.regress.farm`): devices, models, protocol, eval, data, targets_file.

    A device is ``host``, an adb serial, ``host:port``, a ``targets.yaml`` name, or a
    :class:`FarmDevice` mapping; a model a path (or glob) or a :class:`FarmModel` mapping."""

    devices: list[Union[FarmDevice, str]] = Field(min_length=1)
    models: Optional[list[Union[FarmModel, str]]] = Field(default=None, min_length=1)
    protocol: Optional[dict] = None
    eval: FarmEval = FarmEval()
    data: Optional[str] = None
    targets_file: Optional[str] = None

    _proto = field_validator("protocol")(classmethod(lambda cls, v: _protocol_fields(v)))

    @field_validator("devices", mode="before")
    @classmethod
    def _device_text(cls, v):
        if isinstance(v, list):
            return [str(d) if isinstance(d, int) and not isinstance(d, bool) else d for d in v]
        return v

    @field_validator("devices", "models")
    @classmethod
    def _nonblank(cls, v):
        for x in v or ():
            if isinstance(x, str) and not x.strip():
                raise ValueError("an entry is blank")
        return v


def _lines(text: str) -> dict[tuple, int]:
    """``{(key, 0, key, ...): line}`` (1-based) for every mapping key and list item of a YAML text."""
    import yaml

    out: dict[tuple, int] = {}

    def walk(node, loc):
        out.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = loc + (k.value,)
                out[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, loc + (i,))
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    if root is not None:
        walk(root, ())
    return out


def validate_config(model: type[BaseModel], data, path, what: str, lines: dict | None = None):
    """``model.model_validate(data)``, or a :class:`ConfigError` for the first mistake:
    ``"WHAT PATH, line N: FIELD: what is wrong (got VALUE)"``."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        errs = e.errors()
        # a union (`host` or {name:, serial:}) reports one error per member: keep the member the
        # input was meant for (the deeper error), and drop pydantic's member tags from the field
        mismatch = [x for x in errs if x["type"] in _UNION_MISMATCH and any(_is_tag(p) for p in x["loc"])]
        others = [x for x in errs if x not in mismatch]
        err = dict((others or errs)[0])
        if not others and len(mismatch) > 1:
            err["msg"] = "expected " + " or ".join(sorted({_TAG_NAMES.get(x["type"], x["type"]) for x in mismatch}))
        loc = tuple(p for p in err["loc"] if not _is_tag(p))
        line = None
        for n in range(len(loc), -1, -1):
            if lines and loc[:n] in lines:
                line = lines[loc[:n]]
                break
        field = ".".join(str(p) for p in loc) or "top level"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key; expected some of: {', '.join(model_fields(model, loc[:-1]))}"
        elif err["type"] == "missing":
            msg = "missing"
        got = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {err.get('input')!r})"
        at = f", line {line}" if line else ""
        raise ConfigError(f"{what} {path}{at}: {field}: {msg}{got}") from None


_UNION_MISMATCH = {"string_type", "model_type", "dict_type", "int_type", "float_type", "int_parsing", "float_parsing"}
_TAG_NAMES = {"string_type": "a string", "model_type": "a mapping", "dict_type": "a mapping", "int_type": "an integer",
              "int_parsing": "an integer", "float_type": "a number", "float_parsing": "a number"}


def _is_tag(p) -> bool:
    """A pydantic union-member tag in an error location (``str``, ``function-after[...]``, a model name)."""
    return isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "bool", "dict", "list")
                                   or (p[:1].isupper() and p.isidentifier()))


def model_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model at ``loc`` (list indices skipped)."""
    m = model
    for p in loc:
        if isinstance(p, int):
            continue
        ann = m.model_fields[p].annotation
        args = getattr(ann, "__args__", ())
        sub = next((a for a in (ann, *args, *[x for a in args for x in getattr(a, "__args__", ())])
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is None:
            break
        m = sub
    return sorted(m.model_fields)


def load_config(model: type[BaseModel], path, what: str, hint: str = ""):
    """Read the YAML file ``path`` and validate it against ``model`` (see :func:`validate_config`)."""
    from .utils import read_yaml

    path = Path(path)
    data = read_yaml(path, what, ConfigError, hint)
    try:
        text = path.read_text()
    except OSError:
        text = ""
    return validate_config(model, data, path, what, _lines(text))

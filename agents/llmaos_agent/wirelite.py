"""The wire without msgspec: stand-ins for its Struct, Meta, field and Raw, and a strict JSON
codec on the standard library that walks the messages' type annotations.

A bare host (its system ``python3``, no pip) has no msgspec, yet the messages stay defined
once, in :mod:`llmaos_agent.protocol`. That module takes its building blocks from
:func:`backend`: msgspec's own where it is installed (the console always has it), these
stand-ins where not. The stand-ins carry what the protocol declares (fields in order,
defaults and factories, ``forbid_unknown_fields``, ``frozen``, ``array_like``,
``omit_defaults``, and :class:`Meta`'s bounds) so that :class:`LiteCodec` can refuse what
msgspec refuses: unknown fields, wrong types (``true`` is no int, ``1.0`` is no int), strings
and lists past their bounds, ids off their pattern, NaN and infinities, invalid UTF-8, lone
surrogates. Its encoder writes the bytes msgspec writes (field order, compact separators,
msgspec's float spelling, NaN as ``null``), since the console decodes them with msgspec.

Why stand-ins rather than plain dataclasses: msgspec Structs are what the console's code and
types are written against (``Struct`` in signatures, keyword construction, frozen equality),
and the stand-ins behave the same for everything the project does with them, so neither side
changes. The codec also decodes into msgspec's own classes (it reads their field info the same
way), which is how the tests hold both decoders to the same messages in one process.

Over 700 lines on purpose: the stand-ins, the decoder and the encoder are one contract with
msgspec's behaviour (tests/test_wire_lite.py holds them to it) and read best side by side.
"""

# ruff: noqa: PLC0415
# msgspec is imported where it is used, never at the top: this module is what runs without it.
from __future__ import annotations

import importlib.util
import json
import math
import operator
import os
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Final, NamedTuple

__all__ = [
    "NODEFAULT",
    "Backend",
    "DecodeError",
    "LiteCodec",
    "Meta",
    "Raw",
    "Struct",
    "backend",
    "field",
    "replace",
]

FORCE_ENV: Final = "LLMAOS_AGENT_WIRE"
"""``lite`` makes :func:`backend` use the stand-ins even where msgspec is installed."""

MAX_INT_DIGITS: Final = 4300
"""Longest integer literal accepted (CPython's own default limit): parsing longer ones costs
quadratic time on Python 3.10, which has no limit of its own."""


class _NoDefault:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NODEFAULT"


NODEFAULT: Final[Any] = _NoDefault()


class DecodeError(ValueError):
    """A line or value that is not what the type says (msgspec's DecodeError, here)."""


class Meta:
    """Bounds on a value, as ``msgspec.Meta`` declares them (the ones the protocol uses)."""

    __slots__ = ("_regex", "ge", "gt", "le", "lt", "max_length", "min_length", "pattern")

    def __init__(
        self,
        *,
        gt: float | None = None,
        ge: float | None = None,
        lt: float | None = None,
        le: float | None = None,
        pattern: str | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
    ) -> None:
        self.gt, self.ge, self.lt, self.le = gt, ge, lt, le
        self.pattern = pattern
        self.min_length, self.max_length = min_length, max_length
        self._regex = re.compile(pattern) if pattern is not None else None

    def __repr__(self) -> str:
        names = ("gt", "ge", "lt", "le", "pattern", "min_length", "max_length")
        shown = (f"{k}={getattr(self, k)!r}" for k in names if getattr(self, k) is not None)
        return f"Meta({', '.join(shown)})"


class Raw:
    """Already-encoded JSON, spliced into an encoding as it is (``msgspec.Raw``)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes | bytearray | memoryview | str = b"") -> None:
        self._data = data.encode() if isinstance(data, str) else bytes(data)

    def __len__(self) -> int:
        return len(self._data)

    def __bytes__(self) -> bytes:
        return self._data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Raw) and other._data == self._data

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"Raw({self._data!r})"


class _Field:
    __slots__ = ("default", "factory")

    def __init__(self, default: Any, factory: Any) -> None:
        self.default, self.factory = default, factory


def field(*, default: Any = NODEFAULT, default_factory: Any = NODEFAULT) -> Any:
    """A field's default or default factory (``msgspec.field``)."""
    if default is not NODEFAULT and default_factory is not NODEFAULT:
        raise TypeError("cannot set both default and default_factory")
    return _Field(default, default_factory)


class _Config(NamedTuple):
    forbid_unknown_fields: bool
    frozen: bool
    array_like: bool
    omit_defaults: bool


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "Final", "typing.Final"))


class _StructMeta(type):
    """Makes each Struct a slotted class with its fields, defaults and options recorded."""

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        ns: dict[str, Any],
        *,
        forbid_unknown_fields: bool = False,
        frozen: bool = False,
        array_like: bool = False,
        omit_defaults: bool = False,
    ) -> _StructMeta:
        inherited: list[str] = []
        defaults: dict[str, _Field] = {}
        for base in reversed(bases):
            for fname in getattr(base, "__struct_fields__", ()):
                if fname not in inherited:
                    inherited.append(fname)
            defaults.update(getattr(base, "_wl_defaults", {}))
        own = [n for n, a in ns.get("__annotations__", {}).items() if not _is_classvar(a)]
        for fname in own:
            if fname in ns:
                value = ns.pop(fname)
                defaults[fname] = value if isinstance(value, _Field) else _Field(value, NODEFAULT)
        fields = tuple(inherited + [n for n in own if n not in inherited])
        seen_default = False
        for fname in fields:
            if fname in defaults:
                seen_default = True
            elif seen_default:
                raise TypeError(f"{name}: required field {fname!r} follows a field with a default")
        ns["__slots__"] = tuple(n for n in own if n not in inherited)
        cls = super().__new__(mcls, name, bases, ns)
        cls.__struct_fields__ = fields  # type: ignore[attr-defined]
        cls.__match_args__ = fields  # type: ignore[attr-defined,misc]
        cls.__struct_config__ = _Config(  # type: ignore[attr-defined]
            forbid_unknown_fields, frozen, array_like, omit_defaults
        )
        cls._wl_defaults = defaults  # type: ignore[attr-defined]
        # Hashable when frozen, as msgspec's are; the base itself is not frozen.
        cls.__hash__ = _struct_hash if frozen else None  # type: ignore[assignment]
        return cls

    def __init__(cls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **_: bool) -> None:
        super().__init__(name, bases, ns)


class Struct(metaclass=_StructMeta):  # noqa: PLW1641 (the metaclass sets __hash__)
    """A message: keyword (or positional) construction, equality by type and fields, and
    immutability when declared ``frozen`` (``msgspec.Struct``)."""

    __slots__ = ()
    __struct_fields__: ClassVar[tuple[str, ...]] = ()
    __struct_config__: ClassVar[_Config]
    _wl_defaults: ClassVar[dict[str, _Field]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self.__struct_fields__
        if len(args) > len(fields):
            raise TypeError(f"Extra positional arguments provided to {type(self).__name__}")
        values = dict(zip(fields, args, strict=False))
        for key, value in kwargs.items():
            if key not in fields:
                raise TypeError(f"Unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"Argument {key!r} given by name and position")
            values[key] = value
        for fname in fields:
            if fname not in values:
                spec = self._wl_defaults.get(fname)
                if spec is None:
                    raise TypeError(f"Missing required argument {fname!r}")
                values[fname] = spec.default if spec.factory is NODEFAULT else spec.factory()
            object.__setattr__(self, fname, values[fname])

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__struct_config__.frozen:
            raise AttributeError(f"immutable type: {type(self).__name__!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self.__struct_config__.frozen:
            raise AttributeError(f"immutable type: {type(self).__name__!r}")
        object.__delattr__(self, name)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self.__struct_fields__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__struct_fields__)
        return f"{type(self).__name__}({shown})"

    def __copy__(self) -> Any:
        return replace(self)


def _struct_hash(self: Struct) -> int:
    return hash((type(self), self._values()))


def replace(obj: Any, /, **changes: Any) -> Any:
    """A copy of ``obj`` with ``changes`` (``msgspec.structs.replace``)."""
    return type(obj)(**{f: changes.pop(f, getattr(obj, f)) for f in obj.__struct_fields__},
                     **changes)  # fmt: skip


# ------------------------------------------------------------------ field info


class _Info(NamedTuple):
    """What the codec needs of a Struct class, whichever library made it."""

    fields: tuple[str, ...]
    types: dict[str, Any]
    defaults: dict[str, tuple[Any, Any]]  # name -> (default, factory), NODEFAULT where none
    required: int  # how many leading fields have no default
    config: _Config


_INFO: dict[type, _Info] = {}


def _msgspec_struct() -> type | None:
    mod = sys.modules.get("msgspec")
    return getattr(mod, "Struct", None) if mod is not None else None


def _is_struct(tp: object) -> bool:
    if not isinstance(tp, type):
        return False
    other = _msgspec_struct()
    return issubclass(tp, Struct) or (other is not None and issubclass(tp, other))


def _info(cls: type) -> _Info:
    got = _INFO.get(cls)
    if got is not None:
        return got
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: tuple[str, ...] = cls.__struct_fields__  # type: ignore[attr-defined]
    cfg = cls.__struct_config__  # type: ignore[attr-defined]
    config = _Config(cfg.forbid_unknown_fields, cfg.frozen, cfg.array_like, cfg.omit_defaults)
    defaults: dict[str, tuple[Any, Any]] = {}
    if issubclass(cls, Struct):
        for fname, spec in cls._wl_defaults.items():
            defaults[fname] = (spec.default, spec.factory)
    else:  # a msgspec Struct
        import msgspec

        for finfo in msgspec.structs.fields(cls):  # type: ignore[arg-type]
            d = NODEFAULT if finfo.default is msgspec.NODEFAULT else finfo.default
            f = NODEFAULT if finfo.default_factory is msgspec.NODEFAULT else finfo.default_factory
            if d is not NODEFAULT or f is not NODEFAULT:
                defaults[finfo.name] = (d, f)
    required = next((i for i, f in enumerate(fields) if f in defaults), len(fields))
    got = _Info(fields, {f: hints[f] for f in fields}, defaults, required, config)
    _INFO[cls] = got
    return got


# -------------------------------------------------------------------- decoding


def _refuse_constant(name: str) -> Any:
    raise DecodeError(f"JSON is malformed: {name} is not a JSON number")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise DecodeError("Number out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise DecodeError("Number out of range")
    return int(text)


_quote: Callable[[str], str] = json.encoder.encode_basestring
"""A JSON string with msgspec's escapes (``"``, ``\\``, control characters), UTF-8 kept: what
``json.dumps(s, ensure_ascii=False)`` writes, without its per-call overhead."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    for key, _ in pairs:
        if _SURROGATE.search(key):
            raise DecodeError("Invalid UTF-8 encoded string (a lone surrogate)")
    return dict(pairs)


_DECODER = json.JSONDecoder(
    parse_float=_parse_float,
    parse_int=_parse_int,
    parse_constant=_refuse_constant,
    object_pairs_hook=_pairs,
    strict=True,  # control characters inside strings are malformed, as JSON says
)

_KINDS: Final[dict[type, str]] = {
    dict: "object", list: "array", str: "str", int: "int", float: "float", bool: "bool",
    type(None): "null",
}  # fmt: skip


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


class _Invalid(Exception):
    """A value that does not fit its type; ``path`` says where (``$.procs.upsert[0]``)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.message, self.path = message, path

    def __str__(self) -> str:
        return self.message if self.path == "$" else f"{self.message} - at `{self.path}`"


def _metas(annotated: Any) -> list[Any]:
    return [m for m in annotated.__metadata__ if hasattr(m, "max_length") and hasattr(m, "ge")]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "str"
    if origin is list:
        return "array"
    if tp is type(None):
        return "null"
    if _is_struct(tp):
        return "array" if _info(tp).config.array_like else "object"
    return getattr(tp, "__name__", str(tp))


_BOUNDS: Final = (
    ("ge", operator.ge, ">="),
    ("gt", operator.gt, ">"),
    ("le", operator.le, "<="),
    ("lt", operator.lt, "<"),
)


def _number_bounds(value: float, metas: list[Any], name: str, path: str) -> None:
    for m in metas:
        for attr, holds, sign in _BOUNDS:
            bound = getattr(m, attr)
            if bound is not None and not holds(value, bound):
                shown = float(bound) if name == "float" else bound
                raise _Invalid(f"Expected `{name}` {sign} {shown}", path)


def _length_bounds(n: int, metas: list[Any], name: str, path: str) -> None:
    for m in metas:
        if m.min_length is not None and n < m.min_length:
            raise _Invalid(f"Expected `{name}` of length >= {m.min_length}", path)
        if m.max_length is not None and n > m.max_length:
            raise _Invalid(f"Expected `{name}` of length <= {m.max_length}", path)


_SCALAR_FITS: Final[dict[Any, Callable[[Any], bool]]] = {
    type(None): lambda v: v is None,
    bool: lambda v: isinstance(v, bool),
    int: lambda v: type(v) is int,  # a bool is no int on the wire
    float: lambda v: type(v) in (int, float),
    str: lambda v: isinstance(v, str),
    list: lambda v: isinstance(v, list),
    typing.Literal: lambda v: isinstance(v, str),  # the protocol's literals are all strings
}


def _fits(value: Any, tp: Any) -> bool:
    """Whether a JSON value is of the kind ``tp`` takes (bounds not yet checked)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _fits(value, typing.get_args(tp)[0])
    if tp is Any or _is_raw(tp):
        return True
    check = _SCALAR_FITS.get(origin if origin is not None else tp)
    if check is not None:
        return check(value)
    if _is_struct(tp):
        return isinstance(value, list if _info(tp).config.array_like else dict)
    return False


def _is_raw(tp: Any) -> bool:
    mod = sys.modules.get("msgspec")
    return tp is Raw or (mod is not None and tp is getattr(mod, "Raw", None))


Conv = Callable[[Any], Any]
"""A decoded JSON value to its typed value, or :class:`_Invalid` (path relative to it)."""

_CONV: dict[Any, Conv] = {}
_ENC: dict[type, Callable[[Any], str]] = {}


def _converter(tp: Any) -> Conv:
    """``tp``'s converter, built once from its annotations and kept."""
    conv = _CONV.get(tp)
    if conv is None:

        def later(v: Any) -> Any:  # a stand-in while it is built, for a type in itself
            return _CONV[tp](v)

        _CONV[tp] = later
        conv = _CONV[tp] = _build(tp)
    return conv


def _at(exc: _Invalid, where: str) -> _Invalid:
    exc.path = where + exc.path
    return exc


def _build(tp: Any) -> Conv:  # noqa: C901 (one case per kind of annotation)
    origin = typing.get_origin(tp)
    metas: list[Any] = []
    if origin is typing.Annotated:
        metas = _metas(tp)
        tp = typing.get_args(tp)[0]
        origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _build_union(tp)
    if tp is Any:
        return _identity
    if _is_raw(tp):
        raw_cls = tp
        return lambda v: raw_cls(LiteCodec.encode(v))
    if origin is typing.Literal:
        return _build_literal(tp)
    if tp is str:
        return _build_str(metas)
    if tp is int or tp is float:
        return _build_number(tp, metas)
    if tp is bool or tp is type(None):
        fits = _SCALAR_FITS[tp]
        name = _type_name(tp)

        def scalar(v: Any) -> Any:
            if fits(v):
                return v
            raise _Invalid(f"Expected `{name}`, got `{_kind(v)}`", "")

        return scalar
    if origin is list:
        return _build_list(tp, metas)
    if _is_struct(tp):
        return _build_struct(tp)
    name = _type_name(tp)

    def nothing(v: Any) -> Any:
        raise _Invalid(f"Expected `{name}`, got `{_kind(v)}`", "")

    return nothing


def _identity(v: Any) -> Any:
    return v


def _fits_fn(tp: Any) -> Callable[[Any], bool]:
    """:func:`_fits` for one type, decided once."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _fits_fn(typing.get_args(tp)[0])
    if tp is Any or _is_raw(tp):
        return lambda _: True
    check = _SCALAR_FITS.get(origin if origin is not None else tp)
    if check is not None:
        return check
    if _is_struct(tp):
        kind = list if _info(tp).config.array_like else dict
        return lambda v: isinstance(v, kind)
    return lambda _: False


def _build_union(tp: Any) -> Conv:
    arms = [(_fits_fn(arg), _converter(arg)) for arg in typing.get_args(tp)]
    name = _type_name(tp)

    def union(v: Any) -> Any:
        for fits, conv in arms:
            if fits(v):
                return conv(v)
        raise _Invalid(f"Expected `{name}`, got `{_kind(v)}`", "")

    return union


def _build_literal(tp: Any) -> Conv:
    allowed = frozenset(typing.get_args(tp))

    def literal(v: Any) -> Any:
        if not isinstance(v, str):
            raise _Invalid(f"Expected `str`, got `{_kind(v)}`", "")
        if v not in allowed:
            raise _Invalid(f"Invalid enum value {v!r}", "")
        return v

    return literal


def _build_str(metas: list[Any]) -> Conv:
    sized = [m for m in metas if m.min_length is not None or m.max_length is not None]
    regexes = [(m.pattern, re.compile(m.pattern)) for m in metas if m.pattern is not None]
    search = _SURROGATE.search

    def text(v: Any) -> Any:
        if not isinstance(v, str):
            raise _Invalid(f"Expected `str`, got `{_kind(v)}`", "")
        if search(v):
            raise _Invalid("Invalid UTF-8 encoded string (a lone surrogate)", "")
        if sized:
            _length_bounds(len(v), sized, "str", "")
        for pattern, rx in regexes:
            if rx.search(v) is None:
                raise _Invalid(f"Expected `str` matching regex {pattern!r}", "")
        return v

    return text


def _build_number(tp: type, metas: list[Any]) -> Conv:
    name = tp.__name__
    bounded = [m for m in metas if any(getattr(m, a) is not None for a, _, _ in _BOUNDS)]
    if tp is int:

        def integer(v: Any) -> Any:
            if type(v) is not int:
                raise _Invalid(f"Expected `int`, got `{_kind(v)}`", "")
            if bounded:
                _number_bounds(v, bounded, name, "")
            return v

        return integer

    def real(v: Any) -> Any:
        kind = type(v)
        if kind is not float:
            if kind is not int:
                raise _Invalid(f"Expected `float`, got `{_kind(v)}`", "")
            try:
                v = float(v)
            except OverflowError:
                raise _Invalid("Number out of range", "") from None
        if bounded:
            _number_bounds(v, bounded, name, "")
        return v

    return real


def _build_list(tp: Any, metas: list[Any]) -> Conv:
    (item_tp,) = typing.get_args(tp)
    item = _converter(item_tp)
    sized = [m for m in metas if m.min_length is not None or m.max_length is not None]

    def array(v: Any) -> Any:
        if not isinstance(v, list):
            raise _Invalid(f"Expected `array`, got `{_kind(v)}`", "")
        if sized:
            _length_bounds(len(v), sized, "array", "")
        try:
            return [item(x) for x in v]
        except _Invalid:
            # Again, one at a time, to say where (only on the way to a refusal).
            for i, x in enumerate(v):
                try:
                    item(x)
                except _Invalid as exc:
                    raise _at(exc, f"[{i}]") from None
            raise

    return array


def _build_struct(cls: type) -> Conv:
    info = _info(cls)
    fields, required, cfg = info.fields, info.required, info.config
    forbid, total = cfg.forbid_unknown_fields, len(fields)
    convs = {f: _converter(info.types[f]) for f in fields}
    if cfg.array_like:
        return _array_struct(cls, [convs[f] for f in fields], required, total, forbid)
    return _object_struct(cls, convs, fields[:required], forbid)


def _array_struct(cls: type, ordered: list[Conv], required: int, total: int, forbid: bool) -> Conv:
    def from_array(v: Any) -> Any:
        if not isinstance(v, list):
            raise _Invalid(f"Expected `array`, got `{_kind(v)}`", "")
        n = len(v)
        if n < required:
            raise _Invalid(f"Expected `array` of at least length {required}, got {n}", "")
        if n > total and forbid:
            raise _Invalid(f"Expected `array` of at most length {total}, got {n}", "")
        try:
            args = [c(x) for c, x in zip(ordered, v, strict=False)]
        except _Invalid:
            for i, (c, x) in enumerate(zip(ordered, v, strict=False)):
                try:
                    c(x)
                except _Invalid as exc:
                    raise _at(exc, f"[{i}]") from None
            raise
        return cls(*args)

    return from_array


def _check_keys(v: dict[str, Any], convs: dict[str, Conv], must: tuple[str, ...],
                forbid: bool) -> None:  # fmt: skip
    if forbid:
        for key in v:
            if key not in convs:
                raise _Invalid(f"Object contains unknown field `{key}`", "")
    for fname in must:
        if fname not in v:
            raise _Invalid(f"Object missing required field `{fname}`", "")


def _object_struct(cls: type, convs: dict[str, Conv], must: tuple[str, ...], forbid: bool) -> Conv:
    def from_object(v: Any) -> Any:
        if not isinstance(v, dict):
            raise _Invalid(f"Expected `object`, got `{_kind(v)}`", "")
        _check_keys(v, convs, must, forbid)
        kwargs = {}
        for key, x in v.items():
            conv = convs.get(key)
            if conv is not None:
                try:
                    kwargs[key] = conv(x)
                except _Invalid as exc:
                    raise _at(exc, f".{key}") from None
        return cls(**kwargs)

    return from_object


# ---------------------------------------------------------------- encoding


def _value(v: Any) -> str:
    """One value's JSON: by its exact type, from a table filled as types are met."""
    enc = _ENC.get(type(v))
    if enc is None:
        enc = _encoder_of(type(v))
    return enc(v)


def _encoder_of(kind: type) -> Callable[[Any], str]:
    if kind in (list, tuple):
        return _seq_json
    if kind is dict:
        return _dict_json
    if _is_struct(kind):
        enc = _ENC[kind] = _build_struct_encoder(kind)
        return enc
    if _is_raw(kind):
        return _raw_json
    # Subclasses of the containers, as isinstance took them before; no others.
    if issubclass(kind, (list, tuple)):
        return _seq_json
    if issubclass(kind, dict):
        return _dict_json
    raise TypeError(f"Encoding objects of type {kind.__name__} is unsupported")


def _seq_json(items: Any) -> str:
    return "[" + ",".join([_value(x) for x in items]) + "]"


def _dict_json(obj: dict[Any, Any]) -> str:
    parts = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"Only dicts with str keys are supported, not {key!r}")
        parts.append(_quote(key) + ":" + _value(value))
    return "{" + ",".join(parts) + "}"


def _raw_json(obj: Any) -> str:
    return bytes(obj).decode("utf-8") or "null"


def _build_struct_encoder(cls: type) -> Callable[[Any], str]:
    """One Struct class's encoder, generated from its fields once: an array of its values
    (``array_like``), else an object, leaving out fields at their defaults where the class
    says ``omit_defaults``."""
    info = _info(cls)
    names = list(info.fields)
    get: Callable[[Any], tuple[Any, ...]]
    if len(names) > 1:
        get = operator.attrgetter(*names)
    elif names:
        name = names[0]
        get = lambda o: (getattr(o, name),)  # noqa: E731 (attrgetter of one name gives no tuple)
    else:
        get = lambda _: ()  # noqa: E731
    value = _value
    if info.config.array_like:
        return lambda o: "[" + ",".join([value(x) for x in get(o)]) + "]"
    keys = [_quote(f) + ":" for f in names]
    omit = info.config.omit_defaults
    # Each field's default (a factory's value, made once), where it may be left out.
    skip: list[tuple[bool, Any]] = []
    for f in names:
        spec = info.defaults.get(f) if omit else None
        if spec is None:
            skip.append((False, None))
        else:
            default, factory = spec
            skip.append((True, default if factory is NODEFAULT else factory()))
    if not any(s for s, _ in skip):
        pairs = list(zip(keys, range(len(keys)), strict=True))

        def plain(o: Any) -> str:
            vals = get(o)
            return "{" + ",".join([k + value(vals[i]) for k, i in pairs]) + "}"

        return plain
    table = list(zip(keys, skip, strict=True))

    def omitting(o: Any) -> str:
        parts = [k + value(v) for (k, (s, d)), v in zip(table, get(o), strict=True)
                 if not (s and _same(v, d))]  # fmt: skip
        return "{" + ",".join(parts) + "}"

    return omitting


class LiteCodec:
    """Strict JSON to typed messages and back, on the standard library (see module doc).

    Each type's decoder and each Struct class's encoder is built once, from its
    annotations, and kept: the per-message work is the JSON parse and one call per value."""

    name: Final = "lite"
    errors: Final[tuple[type[BaseException], ...]] = (
        DecodeError, UnicodeDecodeError, UnicodeEncodeError, RecursionError,
    )  # fmt: skip

    def decode(self, data: bytes | bytearray | memoryview | str, tp: Any) -> Any:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        try:
            value = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise DecodeError(f"JSON is malformed: {exc}") from None
        conv = _CONV.get(tp)
        if conv is None:
            conv = _converter(tp)
        try:
            return conv(value)
        except _Invalid as exc:
            raise DecodeError(str(_at(exc, "$"))) from None

    @staticmethod
    def encode(obj: Any) -> bytes:
        return _value(obj).encode("utf-8")


def _same(value: Any, default: Any) -> bool:
    if default is None or isinstance(default, bool):
        return value is default
    return type(value) is type(default) and bool(value == default)


def float_json(value: float) -> str:
    """A float as msgspec writes it: the shortest repr, no ``+`` or zero-padding in the
    exponent, positional down to 1e-5; NaN and infinities as ``null`` (JSON has neither)."""
    text = repr(value)
    if "e" not in text and "n" not in text:  # "inf" and "nan" have an n, no number has
        return text
    if not math.isfinite(value):
        return "null"
    mantissa, exp = text.split("e")
    power = int(exp)
    if power == -5:
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{power}"


_SCALAR_OUT: Final[dict[type, Callable[[Any], str]]] = {
    type(None): lambda _: "null",
    bool: lambda v: "true" if v else "false",
    str: _quote,
    int: int.__repr__,
    float: float_json,
}
_ENC.update(_SCALAR_OUT)


# --------------------------------------------------------------------- backend


class MsgspecCodec:
    """msgspec's JSON, behind the same two calls as :class:`LiteCodec`."""

    name: Final = "msgspec"

    def __init__(self) -> None:
        import msgspec

        self._msgspec = msgspec
        self._encoder = msgspec.json.Encoder()
        self._decoders: dict[Any, Any] = {}
        # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a
        # string, and RecursionError for JSON nested deeper than its C stack allows.
        self.errors: tuple[type[BaseException], ...] = (
            msgspec.DecodeError, UnicodeDecodeError, RecursionError,
        )  # fmt: skip

    def decode(self, data: bytes | bytearray | memoryview | str, tp: Any) -> Any:
        dec = self._decoders.get(tp)
        if dec is None:
            dec = self._decoders[tp] = self._msgspec.json.Decoder(tp)
        return dec.decode(data)

    def encode(self, obj: Any) -> bytes:
        return self._encoder.encode(obj)


Codec = LiteCodec | MsgspecCodec


class Backend(NamedTuple):
    """The pieces :mod:`llmaos_agent.protocol` is built from."""

    Struct: Any
    Meta: Any
    field: Any
    Raw: Any
    replace: Any
    codec: Codec


_LITE_NEXT = False


def backend() -> Backend:
    """msgspec's pieces where msgspec is installed, else the stand-ins; the stand-ins too
    under ``LLMAOS_AGENT_WIRE=lite`` or inside :func:`load_lite_protocol`."""
    if not _LITE_NEXT and os.environ.get(FORCE_ENV) != "lite":
        try:
            import msgspec
        except ImportError:
            pass
        else:
            return Backend(msgspec.Struct, msgspec.Meta, msgspec.field, msgspec.Raw,
                           msgspec.structs.replace, MsgspecCodec())  # fmt: skip
    return Backend(Struct, Meta, field, Raw, replace, LiteCodec())


def load_lite_protocol() -> types.ModuleType:
    """A second copy of :mod:`llmaos_agent.protocol` built on the stand-ins, as a bare host
    has it, in a process that has msgspec (for tests that compare the two)."""
    global _LITE_NEXT  # noqa: PLW0603 (the one switch backend() reads while it runs)
    name = "llmaos_agent._protocol_lite"
    if name in sys.modules:
        return sys.modules[name]
    origin = importlib.util.find_spec("llmaos_agent.protocol")
    assert origin is not None and origin.origin is not None
    spec = importlib.util.spec_from_file_location(name, origin.origin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _LITE_NEXT = True
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        _LITE_NEXT = False
    return module

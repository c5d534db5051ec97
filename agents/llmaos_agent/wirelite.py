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
from collections.abc import Callable, Iterator
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


class LiteCodec:
    """Strict JSON to typed messages and back, on the standard library (see module doc)."""

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
        try:
            return self._convert(value, tp, "$")
        except _Invalid as exc:
            raise DecodeError(str(exc)) from None

    def _convert(self, value: Any, tp: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        metas: list[Any] = []
        if origin is typing.Annotated:
            metas = _metas(tp)
            tp = typing.get_args(tp)[0]
            origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            return self._union(value, tp, path)
        if tp is Any:
            return value
        if _is_raw(tp):
            return tp(self.encode(value))
        if not _fits(value, tp):
            raise _Invalid(f"Expected `{_type_name(tp)}`, got `{_kind(value)}`", path)
        if origin is typing.Literal:
            if value not in typing.get_args(tp):
                raise _Invalid(f"Invalid enum value {value!r}", path)
            return value
        if tp in (type(None), bool, int, float, str):
            return self._scalar(value, tp, metas, path)
        if origin is list:
            _length_bounds(len(value), metas, "array", path)
            (item,) = typing.get_args(tp)
            return [self._convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return self._struct(value, tp, path)

    @staticmethod
    def _scalar(value: Any, tp: Any, metas: list[Any], path: str) -> Any:
        if tp is str:
            return LiteCodec._str(value, metas, path)
        if tp is int or tp is float:
            try:
                number = float(value) if tp is float else value
            except OverflowError:
                raise _Invalid("Number out of range", path) from None
            _number_bounds(number, metas, tp.__name__, path)
            return number
        return value

    @staticmethod
    def _str(value: str, metas: list[Any], path: str) -> str:
        if _SURROGATE.search(value):
            raise _Invalid("Invalid UTF-8 encoded string (a lone surrogate)", path)
        _length_bounds(len(value), metas, "str", path)
        for m in metas:
            if m.pattern is not None and re.search(m.pattern, value) is None:
                raise _Invalid(f"Expected `str` matching regex {m.pattern!r}", path)
        return value

    def _union(self, value: Any, tp: Any, path: str) -> Any:
        for arg in typing.get_args(tp):
            if _fits(value, arg):
                return self._convert(value, arg, path)
        raise _Invalid(f"Expected `{_type_name(tp)}`, got `{_kind(value)}`", path)

    def _struct(self, value: list[Any] | dict[str, Any], cls: type, path: str) -> Any:
        info = _info(cls)
        if isinstance(value, list):
            n, total = len(value), len(info.fields)
            if n < info.required:
                raise _Invalid(
                    f"Expected `array` of at least length {info.required}, got {n}", path
                )
            if n > total and info.config.forbid_unknown_fields:
                raise _Invalid(f"Expected `array` of at most length {total}, got {n}", path)
            pairs: Iterator[tuple[str, Any]] = zip(info.fields, value, strict=False)
        else:
            if info.config.forbid_unknown_fields:
                for key in value:
                    if key not in info.types:
                        raise _Invalid(f"Object contains unknown field `{key}`", path)
            for fname in info.fields[: info.required]:
                if fname not in value:
                    raise _Invalid(f"Object missing required field `{fname}`", path)
            pairs = ((k, v) for k, v in value.items() if k in info.types)
        kwargs = {k: self._convert(v, info.types[k], f"{path}.{k}" if isinstance(value, dict)
                                   else f"{path}[{i}]")
                  for i, (k, v) in enumerate(pairs)}  # fmt: skip
        return cls(**kwargs)

    # ---------------------------------------------------------------- encoding

    def encode(self, obj: Any) -> bytes:
        parts: list[str] = []
        self._write(obj, parts.append)
        return "".join(parts).encode("utf-8")

    def _write(self, obj: Any, out: Callable[[str], object]) -> None:
        scalar = _SCALAR_OUT.get(type(obj))
        if scalar is not None:
            out(scalar(obj))
        elif isinstance(obj, (list, tuple)):
            self._seq(obj, out)
        elif isinstance(obj, dict):
            out("{")
            for i, (key, value) in enumerate(obj.items()):
                if not isinstance(key, str):
                    raise TypeError(f"Only dicts with str keys are supported, not {key!r}")
                out("," if i else "")
                out(_quote(key) + ":")
                self._write(value, out)
            out("}")
        elif _is_struct(type(obj)):
            self._struct_out(obj, out)
        elif _is_raw(type(obj)):
            out(bytes(obj).decode("utf-8") or "null")
        else:
            raise TypeError(f"Encoding objects of type {type(obj).__name__} is unsupported")

    def _seq(self, items: Any, out: Callable[[str], object]) -> None:
        out("[")
        for i, item in enumerate(items):
            out("," if i else "")
            self._write(item, out)
        out("]")

    def _struct_out(self, obj: Any, out: Callable[[str], object]) -> None:
        info = _info(type(obj))
        if info.config.array_like:
            self._seq([getattr(obj, f) for f in info.fields], out)
            return
        out("{")
        first = True
        for fname in info.fields:
            value = getattr(obj, fname)
            if info.config.omit_defaults and fname in info.defaults:
                default, factory = info.defaults[fname]
                if _same(value, default if factory is NODEFAULT else factory()):
                    continue
            out("" if first else ",")
            first = False
            out(_quote(fname) + ":")
            self._write(value, out)
        out("}")


def _same(value: Any, default: Any) -> bool:
    if default is None or isinstance(default, bool):
        return value is default
    return type(value) is type(default) and bool(value == default)


def float_json(value: float) -> str:
    """A float as msgspec writes it: the shortest repr, no ``+`` or zero-padding in the
    exponent, positional down to 1e-5; NaN and infinities as ``null`` (JSON has neither)."""
    if not math.isfinite(value):
        return "null"
    text = repr(value)
    if "e" not in text:
        return text
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

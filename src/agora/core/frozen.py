"""A faster `__init__` for the frozen, slotted dataclasses the hot paths build by the
hundred thousand (cells, messages, effects).

Owns: `fast_init`. A frozen dataclass's generated `__init__` assigns each field through
`object.__setattr__(self, name, value)`, a name lookup per field; this one calls each slot's
own descriptor directly, which gives the same object about twice as fast. Everything else
about the class stays as `@dataclass` made it: frozen (assignment still raises
`FrozenInstanceError`), equality, hashing, repr, defaults, default factories, fields with
`init=False` and `__post_init__`. Apply it above `@dataclass(frozen=True, slots=True)`.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

T = TypeVar("T", bound=type)

_FACTORY = object()  # marks "use the default factory" in a generated signature


def _slot(cls: type, name: str):
    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None:
            assert hasattr(descriptor, "__set__"), f"{cls.__name__}.{name} is not a slot"
            return descriptor
    raise AssertionError(f"{cls.__name__}.{name} has no slot")


def fast_init(cls: T) -> T:
    """Replace the `__init__` of a frozen, slotted dataclass by an equivalent, faster one."""
    params = cls.__dataclass_params__
    assert params.frozen and "__slots__" in cls.__dict__, f"{cls.__name__}: frozen and slotted only"
    namespace: dict = {"_FACTORY": _FACTORY}
    args: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        assert not f.kw_only, f"{cls.__name__}.{f.name}: keyword-only fields are not supported"
        setter = f"_set_{f.name}"
        namespace[setter] = _slot(cls, f.name).__set__
        has_default = f.default is not dataclasses.MISSING
        has_factory = f.default_factory is not dataclasses.MISSING
        if has_default:
            namespace[f"_default_{f.name}"] = f.default
        if has_factory:
            namespace[f"_factory_{f.name}"] = f.default_factory
        if f.init:
            if has_default:
                args.append(f"{f.name}=_default_{f.name}")
            elif has_factory:
                args.append(f"{f.name}=_FACTORY")
                body.append(f"    if {f.name} is _FACTORY: {f.name} = _factory_{f.name}()")
            else:
                args.append(f.name)
            body.append(f"    {setter}(self, {f.name})")
        elif has_default:
            body.append(f"    {setter}(self, _default_{f.name})")
        elif has_factory:
            body.append(f"    {setter}(self, _factory_{f.name}())")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, namespace)  # noqa: S102 -- generated from the class's own field list
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init
    return cls

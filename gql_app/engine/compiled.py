"""Each object plan of a document compiled to Python: one function per object
position that fills the response dicts of a whole batch of objects in one loop.

What graphql-jit does for JavaScript, for the part of execution that dominates
a read: the plain fields. For every object of the batch the generated loop reads
each attribute and computed field, checks it for null and coerces it inline
(``str``, ``bool`` and 32-bit ``int`` values pass as they are, others through the
type's ``coerce_output_value``), writes the key in document order, and collects
what the rest of the executor does per batch: the keys of loader-backed fields,
the values of fields whose completion is an object or a list. A field with a
resolver of its own gets a placeholder that keeps the key order.

Errors take the executor's path (``fail_leaf``, ``fail_null``), so messages, paths
and null propagation stay graphql-core's. The source is kept on the function
(``__source__``) for tests and debugging.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import Any

from graphql import GraphQLBoolean, GraphQLID, GraphQLInt, GraphQLString

from gql_app.engine.fields import Refused

TYPENAME, VALUE, LOADED, BATCHED, RESOLVER = range(5)
"""How a field is executed: its type's name; read from the source (an attribute or
a computed field, which send nothing); a loader's value for a key of the source
(``engine.fields.loaded``), loaded per batch; a resolver with a batch form
(``engine.fields.Batched``: connections), called once per batch; any other
resolver, called per object."""

_PASS_THROUGH = {
    GraphQLString.name: "{v}.__class__ is str",
    GraphQLID.name: "{v}.__class__ is str",
    GraphQLBoolean.name: "{v}.__class__ is bool",
    GraphQLInt.name: "{v}.__class__ is int and -2147483648 <= {v} <= 2147483647",
}
"""Values a built-in scalar's output coercion returns unchanged (its own checks)."""

Fill = Callable[[Any, list[Any], list[dict[str, Any]], list[Any]], list[Any]]


def compile_fill(plan: Any, leaf_type_name: Callable[[Any], str | None]) -> Fill:
    """The fill function of an object plan: ``fill(executor, sources, outs, slots)``
    returns, per field index, the collected values (VALUE fields that are not
    leaves) or keys (LOADED fields) of the batch; None elsewhere."""
    names: dict[str, Any] = {"Refused": Refused}
    prologue: list[str] = []
    body: list[str] = []
    returned: list[str] = []
    for index, field in enumerate(plan.fields):
        key = repr(field.key)
        mode = field.mode
        if mode == TYPENAME:
            body.append(f"o[{key}] = {plan.name!r}")
            returned.append("None")
            continue
        names[f"F{index}"] = field
        if mode in (RESOLVER, BATCHED):
            body.append(f"o[{key}] = None")
            returned.append("None")
        elif mode == LOADED:
            returned.append(f"k{index}")
            prologue.append(f"k{index} = []")
            body += _loaded(index, field, key, names)
        else:
            getter = _getter(index, field, names, prologue)
            leaf = leaf_type_name(field)
            if leaf is None:
                returned.append(f"v{index}")
                prologue.append(f"v{index} = []")
                body += [
                    f"o[{key}] = None",
                    "try:",
                    f"    v{index}.append({getter})",
                    "except Exception as error:",
                    f"    v{index}.append(error)",
                ]
            else:
                returned.append("None")
                body += _leaf(index, key, getter, _PASS_THROUGH.get(leaf))
    lines = [
        "def fill(ex, sources, outs, slots):",
        *(f"    {line}" for line in prologue),
        "    for s, o, slot in zip(sources, outs, slots):",
        *(f"        {line}" for line in body or ["pass"]),
        f"    return [{', '.join(returned)}]",
    ]
    source = "\n".join(lines) + "\n"
    namespace = dict(names)
    exec(compile(source, f"<plan {plan.name}>", "exec"), namespace)
    fill: Any = namespace["fill"]
    fill.__source__ = source
    return fill  # type: ignore[no-any-return]


def _getter(index: int, field: Any, names: dict[str, Any], prologue: list[str]) -> str:
    """The expression reading a VALUE field from ``s``."""
    if field.attribute is not None:
        attribute = field.attribute
        if attribute.isidentifier() and not keyword.iskeyword(attribute):
            return f"s.{attribute}"
        names[f"A{index}"] = attribute
        return f"getattr(s, A{index})"
    names[f"R{index}"] = field.resolve
    prologue.append(f"i{index} = ex.shared_info(F{index}, slots[0])")
    return f"R{index}(s, i{index})"


def _leaf(index: int, key: str, getter: str, passes: str | None) -> list[str]:
    """Read, check and coerce a leaf for one object (the slow cases in ``ex.leaf``)."""
    if passes is None:
        return [
            "try:",
            f"    ex.leaf(F{index}, {getter}, o, slot)",
            "except Exception as error:",
            f"    ex.fail_leaf(F{index}, error, o, slot)",
        ]
    return [
        "try:",
        f"    v = {getter}",
        f"    if {passes.format(v='v')}:",
        f"        o[{key}] = v",
        "    else:",
        f"        ex.leaf(F{index}, v, o, slot)",
        "except Exception as error:",
        f"    ex.fail_leaf(F{index}, error, o, slot)",
    ]


def _loaded(index: int, field: Any, key: str, names: dict[str, Any]) -> list[str]:
    """Collect the key of a loader-backed field (after its guard, if any)."""
    _, attribute, guard = field.loads
    names[f"K{index}"] = attribute
    lines = [f"o[{key}] = None"]
    if guard is None:
        return [
            *lines,
            "try:",
            f"    k{index}.append(getattr(s, K{index}))",
            "except Exception as error:",
            f"    k{index}.append(Refused(error))",
        ]
    names[f"G{index}"] = guard
    return [
        *lines,
        "try:",
        f"    G{index}(ex.context_value, s)",
        f"    k{index}.append(getattr(s, K{index}))",
        "except Exception as error:",
        f"    k{index}.append(Refused(error))",
    ]

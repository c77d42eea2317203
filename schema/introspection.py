"""What introspection costs: measured on its own, by this schema's own counts.

The standard introspection queries (graphql-js's `getIntrospectionQuery`, graphql-core's
`get_introspection_query`: what GraphiQL, GraphQL Code Generator, Rover, Postman and
Insomnia send) nest 14 to 16 fields deep, past the depth limit that is meant for data.
What they return is bounded by the schema, not by the data, so DocumentLimits judges
the fields under `__schema` and `__type` apart from the rest:
- a list is estimated by what this schema holds (`types` by the number of types,
  `fields` by the mean number of fields per type, `args` by the mean per field, …),
  so an introspection query costs about the size of its answer;
- the introspection of one operation may cost at most BUDGET_FACTOR times the full
  standard query (every option on), so two `__schema` aliases pass and a pile of them
  does not;
- and nest at most MAX_DEPTH fields deep: the standard queries' `ofType` chains go 7
  to 9 levels, and no type of this schema wraps more than 4 deep.
Production refuses introspection outright (schema.schema.PRODUCTION_RULES).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sized

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    get_introspection_query,
)

MAX_DEPTH = 24
BUDGET_FACTOR = 2


def _mean(counts: list[int]) -> int:
    """Items per object, rounded up: a list never counts for less than one item."""
    return max(1, math.ceil(sum(counts) / len(counts))) if counts else 1


_ESTIMATES: weakref.WeakKeyDictionary[GraphQLSchema, dict[tuple[str, str], int]] = (
    weakref.WeakKeyDictionary()
)


def list_estimates(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    """(introspection type, list field) → the items it is counted as holding; worked
    out once per schema."""
    estimates = _ESTIMATES.get(schema)
    if estimates is None:
        estimates = _ESTIMATES[schema] = _count(schema)
    return estimates


def _count(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    types = list(schema.type_map.values())

    def each(kinds: tuple[type, ...], count: Callable[[GraphQLNamedType], Sized]) -> int:
        # Over every type, as `types { … }` visits them all: the total is then exact.
        return _mean([len(count(t)) if isinstance(t, kinds) else 0 for t in types])

    fields = [
        f
        for t in types
        if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)
        for f in t.fields.values()
    ]
    return {
        ("__Schema", "types"): len(types),
        ("__Schema", "directives"): len(schema.directives),
        ("__Type", "fields"): each(
            (GraphQLObjectType, GraphQLInterfaceType),
            lambda t: t.fields,  # type: ignore[attr-defined]
        ),
        ("__Type", "interfaces"): each(
            (GraphQLObjectType, GraphQLInterfaceType),
            lambda t: t.interfaces,  # type: ignore[attr-defined]
        ),
        ("__Type", "inputFields"): each(
            (GraphQLInputObjectType,),
            lambda t: t.fields,  # type: ignore[attr-defined]
        ),
        ("__Type", "enumValues"): each(
            (GraphQLEnumType,),
            lambda t: t.values,  # type: ignore[attr-defined]
        ),
        ("__Type", "possibleTypes"): each(
            (GraphQLInterfaceType, GraphQLUnionType),
            schema.get_possible_types,  # type: ignore[arg-type]
        ),
        ("__Field", "args"): _mean([len(f.args) for f in fields]),
        ("__Directive", "args"): _mean([len(d.args) for d in schema.directives]),
    }


# The largest standard query: graphql-core's with every option on (graphql-js 16's
# with every option asks for the same fields, with a shorter `ofType` chain).
STANDARD = get_introspection_query(
    descriptions=True,
    specified_by_url=True,
    directive_is_repeatable=True,
    schema_description=True,
    input_value_deprecation=True,
    one_of=True,
)

"""The OData v4 query options Business Central's API pages accept: `$filter`, `$orderby`,
`$select`, `$top`, `$skip` and `Prefer: odata.maxpagesize`.

`lexer` cuts a `$filter` into tokens, `syntax` parses them into a typed tree, `evaluate` applies
it to an entity, `options` parses the other query options.
"""

from sandbox.odata.evaluate import compile_filter, decode_enum
from sandbox.odata.lexer import (
    BOOLEAN,
    DATE,
    DATETIME,
    DECIMAL,
    ENUM,
    GUID,
    INTEGER,
    STRING,
    ODataError,
    tokenize,
)
from sandbox.odata.options import (
    parse_maxpagesize,
    parse_non_negative,
    parse_orderby,
    parse_select,
    sort_entities,
)
from sandbox.odata.syntax import DISTINCT_OR, parse_filter

__all__ = [
    "BOOLEAN",
    "DATE",
    "DATETIME",
    "DECIMAL",
    "DISTINCT_OR",
    "ENUM",
    "GUID",
    "INTEGER",
    "STRING",
    "ODataError",
    "compile_filter",
    "decode_enum",
    "parse_filter",
    "parse_maxpagesize",
    "parse_non_negative",
    "parse_orderby",
    "parse_select",
    "sort_entities",
    "tokenize",
]

"""YAML syntax errors in an operator's words: `FILE:LINE:COL: what is wrong, and the usual fix`.

PyYAML reports what its parser state machine saw ("mapping values are not allowed here",
"expected <block end>, but found '<block mapping start>'"), which names neither the mistake nor
the fix. The mistakes behind these messages are few and well known in hand-edited config files
(a value with ': ' in it, a tab, a misaligned key, an unclosed quote or bracket); each known
message gets a sentence. An unknown one keeps the parser's text, so nothing is hidden.
"""

from __future__ import annotations

import re

import yaml

# (pattern on the problem text, pattern on the context text or None, message). `{line}` is the
# line where the context started, `{0}` the first group of the problem pattern.
_RULES: list[tuple[str, str | None, str]] = [
    (r"found character '\\t' that cannot start any token", None,
     "a tab character: YAML indents with spaces only"),
    (r"found character '(.)' that cannot start any token", None,
     "a value cannot start with '{0}': put the value in quotes"),
    (r"mapping values are not allowed here", None,
     "unexpected ':' here: a value that contains ': ' must be quoted, or this line is indented deeper "
     "than the key above it, or the key on the line above lacks its ':'"),
    (r"could not find expected ':'", None,
     "a key without ':' (or a quote opened earlier and not closed)"),
    (r"expected <block end>, but found", r"block (mapping|collection)",
     "this line is not aligned with the keys or list items of the block that starts at line {line}: "
     "check its indentation"),
    (r"found unexpected end of stream", r"quoted scalar",
     "the quote opened at line {line} is never closed"),
    (r"expected ',' or '\}', but got", None,
     "the '{{' opened at line {line} is not closed with '}}', or its items are not separated by ','"),
    (r"expected ',' or '\]', but got", None,
     "the '[' opened at line {line} is not closed with ']', or its items are not separated by ','"),
    (r"found undefined alias '([^']*)'", None,
     "'*{0}' refers to an anchor '&{0}' that is not defined above it"),
    (r"expected a single document in the stream", None,
     "a second YAML document ('---'): the config is one document"),
    (r"found duplicate anchor", None, "the same '&anchor' is defined twice"),
    (r"while scanning an? (alias|anchor)", None, "an alias or anchor name is missing after '*' or '&'"),
]


def describe(exc: yaml.MarkedYAMLError, source: str) -> str:
    """One line for a YAML syntax error: `SOURCE:LINE:COL: message`.

    >>> def first_error(text):
    ...     try:
    ...         yaml.safe_load(text)
    ...     except yaml.MarkedYAMLError as exc:
    ...         return describe(exc, "c.yaml")
    >>> first_error("mqtt:\\n  host: a: b\\n")
    "c.yaml:2:10: unexpected ':' here: a value that contains ': ' must be quoted, or this line is indented deeper than the key above it, or the key on the line above lacks its ':'"
    >>> first_error("device:\\n\\tid: gw\\n")
    'c.yaml:2:1: a tab character: YAML indents with spaces only'
    >>> first_error("device:\\n  id: gw\\n mqtt: 1\\n")
    'c.yaml:3:2: this line is not aligned with the keys or list items of the block that starts at line 1: check its indentation'
    >>> first_error('device:\\n  id: "gw\\nsensors: []\\n')
    'c.yaml:4:1: the quote opened at line 2 is never closed'
    """
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    problem, context = str(exc.problem or ""), str(exc.context or "")
    line = exc.context_mark.line + 1 if exc.context_mark else "?"
    for pattern, context_pattern, message in _RULES:
        m = re.search(pattern, problem) or (re.search(pattern, context) if not problem else None)
        if m and (context_pattern is None or re.search(context_pattern, context)):
            return f"{where}: {message.format(*m.groups(), line=line)}"
    detail = problem or context
    if context and problem and exc.context_mark:
        detail += f" ({context} started at line {line})"
        if problem.startswith("but "):  # the composer words its message the other way round
            detail = f"{context}, {problem}"
    return f"{where}: YAML syntax error: {detail}"

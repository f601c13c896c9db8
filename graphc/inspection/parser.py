"""Read the text `graphc.inspection.printer` writes back into a Graph.

Each equation is rebuilt through the op registry: its output types are re-derived with the
op's shape rule and must equal the printed ones. Placeholders come back as placeholders,
variables as zeros (unless `values` supplies them), constants from their printed values,
and inline literals as 0-d constants; `# file:line` comments become the nodes' sites.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import numpy as np

from graphc import dtypes
from graphc.errors import DTypeError, ParseError, ShapeError
from graphc.ir import Graph, Node, Tensor, TensorType, VariableStorage
from graphc.ops import load_all

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#.*)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:inf|nan)\b|-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_]\w*(?:/[A-Za-z_]\w*)*)
  | (?P<elided><elided>)
  | (?P<punct>[\[\](){},=:])
""", re.VERBOSE)
_LITERAL_WORDS = {"True": True, "False": False, "None": None}


@dataclass
class Token:
    """One lexeme: its kind (a _TOKEN group name) and text."""

    kind: str
    text: str


class Cursor:
    """The tokens of one line, read left to right; errors name the line."""

    def __init__(self, text: str, lineno: int):
        self.line, self.lineno = text, lineno
        self.tokens, self.comment = _tokenize(text, lineno)
        self.pos = 0

    def error(self, problem: str) -> ParseError:
        """A ParseError naming this line."""
        return ParseError(f"line {self.lineno}: {problem}\n  {self.line.strip()}")

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.error("unexpected end of line")
        self.pos += 1
        return token

    def at(self, text: str) -> bool:
        """True when the next token is `text`."""
        token = self.peek()
        return token is not None and token.text == text

    def accept(self, text: str) -> bool:
        """Consume the next token when it is `text`."""
        found = self.at(text)
        self.pos += found
        return found

    def expect(self, text: str) -> None:
        token = self.peek()
        if token is None or token.text != text:
            got = repr(token.text) if token else "end of line"
            raise self.error(f"expected {text!r}, got {got}")
        self.pos += 1

    def name(self) -> str:
        token = self.next()
        if token.kind != "name":
            raise self.error(f"expected a name, got {token.text!r}")
        return token.text

    def done(self) -> None:
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek().text!r}")


def _tokenize(text: str, lineno: int) -> tuple[list[Token], str]:
    """Tokens and the trailing comment (without `#`) of one line."""
    tokens, comment, pos = [], "", 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ParseError(f"line {lineno}: unexpected character {text[pos]!r}\n"
                             f"  {text.strip()}")
        pos = match.end()
        if match.lastgroup == "comment":
            comment = match.group()[1:].strip()
        elif match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group()))
    return tokens, comment


# ---- types, values, attributes ----

def parse_dtype(cursor: Cursor) -> np.dtype:
    """`f32`, `i32`, `bool`, ..."""
    short = cursor.name()
    if short not in dtypes.FROM_SHORT:
        raise cursor.error(f"unknown dtype {short!r}")
    return dtypes.FROM_SHORT[short]


def parse_type(cursor: Cursor) -> TensorType:
    """`f32[2,3]`."""
    dtype = parse_dtype(cursor)
    cursor.expect("[")
    dims = []
    while not cursor.accept("]"):
        if dims:
            cursor.expect(",")
        token = cursor.next()
        if token.kind != "number" or not token.text.isdigit():
            raise cursor.error(f"expected a dimension, got {token.text!r}")
        dims.append(int(token.text))
    return TensorType(tuple(dims), dtype)


def parse_scalar(cursor: Cursor):
    """A number, True or False, as a Python value."""
    token = cursor.next()
    if token.kind == "number":
        is_int = re.fullmatch(r"-?\d+", token.text) is not None
        return int(token.text) if is_int else float(token.text)
    if token.text in ("True", "False"):
        return token.text == "True"
    raise cursor.error(f"expected a number, got {token.text!r}")


def parse_attr_value(cursor: Cursor):
    """An attribute value: a scalar, None, a quoted string, a dtype, or a tuple of these."""
    token = cursor.peek()
    if token is None:
        raise cursor.error("expected an attribute value, got end of line")
    if token.text == "(":
        return _parse_tuple(cursor)
    if token.kind == "string":
        return _unquote(cursor, cursor.next().text)
    if token.text == "None":
        cursor.next()
        return None
    if token.kind == "name" and token.text not in _LITERAL_WORDS:
        return parse_dtype(cursor)
    return parse_scalar(cursor)


def _parse_tuple(cursor: Cursor) -> tuple:
    cursor.expect("(")
    items = []
    while not cursor.accept(")"):
        items.append(parse_attr_value(cursor))
        if not cursor.at(")"):
            cursor.expect(",")
    return tuple(items)


def _unquote(cursor: Cursor, text: str) -> str:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise cursor.error(f"bad string {text}") from None


def parse_attrs(cursor: Cursor) -> dict:
    """`[key=value ...]`, or {} when there is no bracket."""
    attrs: dict = {}
    if not cursor.accept("["):
        return attrs
    while not cursor.accept("]"):
        key = cursor.name()
        if key in attrs:
            raise cursor.error(f"attribute {key!r} given twice")
        cursor.expect("=")
        attrs[key] = parse_attr_value(cursor)
    return attrs


# ---- the graph ----

@dataclass
class Scope:
    """What parsing has defined so far."""

    values: dict = field(default_factory=dict)       # name -> Tensor
    leaves: list = field(default_factory=list)        # the header's, in order
    literals: list = field(default_factory=list)
    nodes: list = field(default_factory=list)

    def define(self, cursor: Cursor, name: str, value: Tensor) -> None:
        if name in self.values:
            raise cursor.error(f"{name!r} is defined twice")
        self.values[name] = value

    def operand(self, cursor: Cursor) -> Tensor:
        """A defined name, or an inline literal `value:dtype` (a new 0-d constant)."""
        token = cursor.peek()
        if token is not None and token.kind == "name" and token.text not in _LITERAL_WORDS:
            cursor.next()
            if token.text not in self.values:
                raise cursor.error(f"{token.text!r} is not defined")
            return self.values[token.text]
        scalar = parse_scalar(cursor)
        cursor.expect(":")
        literal = _constant(np.array(scalar, dtype=parse_dtype(cursor)), None)
        self.literals.append(literal)
        return literal


def _constant(array: np.ndarray, name: str | None) -> Tensor:
    array.setflags(write=False)
    return Tensor(TensorType(array.shape, array.dtype), name=name, role="constant", data=array)


def parse_leaf(cursor: Cursor, scope: Scope, values: dict) -> None:
    """One header binder: `x:f32[3]`, `W:f32[3] var` or `c:f32[3] const=...`."""
    name = cursor.name()
    cursor.expect(":")
    type_ = parse_type(cursor)
    if cursor.accept("var"):
        array = _given(cursor, values, name, type_, np.zeros(type_.shape, type_.dtype))
        leaf = Tensor(type_, name=name, role="variable", data=VariableStorage(array))
    elif cursor.accept("const"):
        cursor.expect("=")
        leaf = _constant(_const_values(cursor, values, name, type_), name)
    else:
        leaf = Tensor(type_, name=name, role="placeholder")
    scope.define(cursor, name, leaf)
    scope.leaves.append(leaf)


def _const_values(cursor: Cursor, values: dict, name: str, type_: TensorType) -> np.ndarray:
    if cursor.accept("<elided>"):
        if name not in values:
            raise cursor.error(f"the values of constant {name!r} are elided: pass them in"
                               f" parse(text, values={{{name!r}: array}})")
        return _given(cursor, values, name, type_, None)
    cursor.expect("[")
    items = []
    while not cursor.accept("]"):
        items.append(parse_scalar(cursor))
        if not cursor.at("]"):
            cursor.expect(",")
    if len(items) != type_.size:
        raise cursor.error(f"constant {name!r} of type {type_} has {len(items)} values")
    return np.array(items, dtype=type_.dtype).reshape(type_.shape)


def _given(cursor: Cursor, values: dict, name: str, type_: TensorType, default) -> np.ndarray:
    """The array `values` supplies for `name` (checked against its type), else `default`."""
    if name not in values:
        return default
    array = np.asarray(values[name])
    if array.shape != type_.shape:
        raise cursor.error(f"values[{name!r}] has shape {array.shape}, the text says {type_}")
    return np.array(array, dtype=type_.dtype)


def parse_header(cursor: Cursor, scope: Scope, values: dict) -> str:
    """`graph(...) {` or `graph NAME(...) {`; returns the graph's name."""
    if cursor.name() != "graph":
        raise cursor.error("expected 'graph(' to start the text")
    name = "graph" if cursor.at("(") else cursor.name()
    cursor.expect("(")
    while not cursor.accept(")"):
        if scope.leaves:
            cursor.expect(",")
        parse_leaf(cursor, scope, values)
    cursor.expect("{")
    cursor.done()
    return name


def parse_equation(cursor: Cursor, scope: Scope) -> None:
    """`a:f32[3], b:f32[3] = op[attrs] x 1.0:f32  # site`."""
    binders = [_parse_binder(cursor)]
    while cursor.accept(","):
        binders.append(_parse_binder(cursor))
    cursor.expect("=")
    op = cursor.name()
    attrs = parse_attrs(cursor)
    inputs = []
    while cursor.peek() is not None:
        inputs.append(scope.operand(cursor))
    node = build_node(cursor, op, inputs, attrs, binders)
    for (name, _), out in zip(binders, node.outputs):
        scope.define(cursor, name, out)
    scope.nodes.append(node)


def _parse_binder(cursor: Cursor) -> tuple[str, TensorType]:
    name = cursor.name()
    cursor.expect(":")
    return name, parse_type(cursor)


def build_node(cursor: Cursor, op: str, inputs: list, attrs: dict, binders: list) -> Node:
    """A Node of `op`, its output types re-derived and compared with the printed ones."""
    opdef = load_all().get(op)
    if opdef is None:
        raise cursor.error(f"unknown op {op!r}")
    if set(attrs) != set(opdef.attrs):
        raise cursor.error(f"op {op} takes attributes {sorted(opdef.attrs)},"
                           f" got {sorted(attrs)}")
    if opdef.arity is not None and len(inputs) != opdef.arity:
        raise cursor.error(f"op {op} takes {opdef.arity} operands, got {len(inputs)}")
    try:
        inferred = opdef.infer([v.type for v in inputs], **attrs)
    except (ShapeError, DTypeError) as exc:
        raise cursor.error(f"op {op}: {exc}") from None
    inferred = [inferred] if isinstance(inferred, TensorType) else list(inferred)
    printed = [type_ for _, type_ in binders]
    if inferred != printed:
        shown = ", ".join(map(str, inferred))
        raise cursor.error(f"op {op} gives type {shown}, the text says"
                           f" {', '.join(map(str, printed))}")
    return Node(op, inputs, attrs, inferred, cursor.comment, [n for n, _ in binders])


def parse_return(cursor: Cursor, scope: Scope) -> list[Tensor]:
    """`return (a, b)`."""
    cursor.expect("return")
    cursor.expect("(")
    outputs = []
    while not cursor.accept(")"):
        if outputs:
            cursor.expect(",")
        outputs.append(scope.operand(cursor))
    cursor.done()
    return outputs


def parse(text: str, values: dict | None = None) -> Graph:
    """The Graph `text` describes; `values` gives variables and elided constants by name."""
    lines = [(line, n) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise ParseError("line 1: empty text, expected 'graph(...) {'")
    scope = Scope()
    name = parse_header(Cursor(*lines[0]), scope, values or {})
    rest = iter(lines[1:])
    outputs = None
    for line, lineno in rest:
        cursor = Cursor(line, lineno)
        if cursor.at("return"):
            outputs = parse_return(cursor, scope)
            break
        if cursor.at("}"):
            raise cursor.error("expected 'return (...)' before '}'")
        parse_equation(cursor, scope)
    if outputs is None:
        raise Cursor(*lines[-1]).error("expected 'return (...)' and '}' to end the graph")
    _parse_close(list(rest), lines[-1])
    return Graph(tuple(scope.leaves + scope.literals), tuple(scope.nodes), tuple(outputs), name)


def _parse_close(rest: list, last: tuple) -> None:
    """The closing `}` and nothing after it."""
    if not rest:
        raise Cursor(*last).error("expected '}' after the return line")
    cursor = Cursor(*rest[0])
    cursor.expect("}")
    cursor.done()
    if len(rest) > 1:
        raise Cursor(*rest[1]).error("text after the closing '}'")

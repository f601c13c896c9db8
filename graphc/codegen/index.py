"""Integer index arithmetic for kernels: linear forms with bounds, simplified as built.

Movement ops become index maps (reshape = flatten then unflatten, transpose = permute,
broadcast = drop, slice = affine), so the maps compose by substitution. Keeping indices
as linear forms over atoms (variables, floor divisions, remainders) with known bounds
lets `(g // 10) * 10 + g % 10` fold back to `g`, and `i % n` vanish when i < n, so the
generated code has no leftover division from a chain of views.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache


def cached_hash(cls):
    """Remember a frozen dataclass's hash: expression DAGs are hashed again and again while
    they are built and emitted, and a dataclass recomputes it over the whole subtree."""
    compute = cls.__hash__

    def __hash__(self):
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = compute(self)
            object.__setattr__(self, "_hash", value)
            return value
    cls.__hash__ = __hash__
    return cls


@cached_hash
@dataclass(frozen=True)
class Var:
    """A loop or work-item index in [0, extent)."""

    name: str
    extent: int

    @cached_property
    def bounds(self):
        return 0, max(self.extent - 1, 0)


@cached_hash
@dataclass(frozen=True)
class Div:
    """Floor division of a non-negative form by a positive constant."""

    form: "Lin"
    divisor: int

    @cached_property
    def bounds(self):
        lo, hi = self.form.bounds
        return lo // self.divisor, hi // self.divisor


@cached_hash
@dataclass(frozen=True)
class Mod:
    """Remainder of a non-negative form by a positive constant."""

    form: "Lin"
    divisor: int

    @property
    def bounds(self):
        return 0, self.divisor - 1


@cached_hash
@dataclass(frozen=True)
class Lin:
    """sum(coef * atom) + const."""

    terms: tuple = ()           # ((atom, coef), ...), atoms unique, coef != 0
    const: int = 0

    @cached_property
    def bounds(self) -> tuple[int, int]:
        lo = hi = self.const
        for atom, coef in self.terms:
            a, b = atom.bounds
            lo += min(coef * a, coef * b)
            hi += max(coef * a, coef * b)
        return lo, hi

    def __add__(self, other) -> "Lin":
        other = lin(other)
        merged: dict = dict(self.terms)
        for atom, coef in other.terms:
            merged[atom] = merged.get(atom, 0) + coef
        terms = tuple((a, c) for a, c in merged.items() if c)
        return _recombine(_make(terms, self.const + other.const))

    def __radd__(self, other) -> "Lin":
        return self + other

    def __sub__(self, other) -> "Lin":
        return self + lin(other) * -1

    def __mul__(self, factor: int) -> "Lin":
        if factor == 0:
            return _make((), 0)
        if factor == 1:
            return self
        return _make(tuple((a, c * factor) for a, c in self.terms), self.const * factor)

    def __floordiv__(self, divisor: int) -> "Lin":
        return floordiv(self, divisor)

    def __mod__(self, divisor: int) -> "Lin":
        return mod(self, divisor)

    @property
    def is_const(self) -> bool:
        return not self.terms


def _make(terms: tuple, const: int) -> Lin:
    """Lin(terms, const) without the frozen dataclass's per-field __setattr__ (index forms
    are built by the tens of thousands per compile)."""
    form = object.__new__(Lin)
    form.__dict__.update(terms=terms, const=const)
    return form


def lin(value) -> Lin:
    """An int, an atom or a Lin as a Lin."""
    if isinstance(value, Lin):
        return value
    if isinstance(value, int):
        return _make((), value)
    return _make(((value, 1),), 0)


def var(name: str, extent: int) -> Lin:
    """The index variable `name` running over [0, extent)."""
    return lin(Var(name, extent)) if extent > 1 else _make((), 0)


def floordiv(form: Lin, divisor: int) -> Lin:
    """form // divisor, simplified using bounds and exact multiples."""
    form = lin(form)
    lo, hi = form.bounds
    if divisor == 1:
        return form
    if 0 <= lo and hi < divisor:
        return _make((), 0)
    exact = [(a, c) for a, c in form.terms if c % divisor == 0]
    rest = _make(tuple(t for t in form.terms if t not in exact), form.const)
    r_lo, r_hi = rest.bounds
    if exact and 0 <= r_lo and r_hi < divisor:          # (a*d + r) // d == a when 0 <= r < d
        return _make(tuple((a, c // divisor) for a, c in exact), 0)
    whole = _make(tuple((a, c // divisor) for a, c in exact), 0)
    if exact and 0 <= r_lo and whole.bounds[0] >= 0:     # (a*d + r) // d == a + r // d
        return whole + floordiv(rest, divisor)          # (r >= 0: C's / is floor there)
    if form.is_const:
        return _make((), form.const // divisor)
    return lin(Div(form, divisor))


def mod(form: Lin, divisor: int) -> Lin:
    """form % divisor, simplified using bounds and exact multiples."""
    form = lin(form)
    if divisor == 1:
        return _make((), 0)
    kept = _make(tuple((a, c) for a, c in form.terms if c % divisor), form.const % divisor)
    lo, hi = kept.bounds
    if lo < 0:      # dropping multiples can leave it negative, and C's -1 % 2 is -1
        kept = _make(kept.terms, kept.const - lo // divisor * divisor)
        lo, hi = kept.bounds
    if 0 <= lo and hi < divisor:
        return kept
    if kept.is_const:
        return _make((), kept.const % divisor)
    return lin(Mod(kept, divisor))


def _recombine(form: Lin) -> Lin:
    """Fold d * (x // d) + (x % d) back into x."""
    if not any(type(atom) is Div for atom, _ in form.terms):
        return form
    terms = dict(form.terms)
    for atom, coef in form.terms:
        if isinstance(atom, Div) and atom in terms:
            partner = Mod(atom.form, atom.divisor)
            if terms.get(partner) == coef // atom.divisor and coef % atom.divisor == 0 \
                    and coef // atom.divisor != 0:
                scale = coef // atom.divisor
                del terms[atom], terms[partner]
                return _recombine(_make(tuple(terms.items()), form.const) + atom.form * scale)
    return form


def flatten(indices, shape) -> Lin:
    """Row-major linear offset of `indices` in `shape`."""
    offset = _make((), 0)
    for index, size in zip(indices, shape):
        offset = offset * size + index
    return offset


def unflatten(offset: Lin, shape) -> list[Lin]:
    """Row-major indices of a linear `offset` in `shape`."""
    indices = []
    for size in reversed(shape):
        indices.append(mod(offset, size) if size > 1 else _make((), 0))
        offset = floordiv(offset, size) if size > 1 else offset
    return indices[::-1]


@lru_cache(maxsize=1 << 16)
def render(form: Lin) -> str:
    """C (and WGSL) text of an index form (remembered: kernels repeat their index forms)."""
    parts = []
    for atom, coef in sorted(form.terms, key=lambda t: _atom_key(t[0])):
        text = _render_atom(atom)
        parts.append(text if coef == 1 else f"{text} * {coef}")
    if form.const or not parts:
        parts.append(str(form.const))
    return " + ".join(parts).replace("+ -", "- ")


@lru_cache(maxsize=1 << 16)
def _render_atom(atom) -> str:
    if isinstance(atom, Var):
        return atom.name
    inner = render(atom.form)
    op = "/" if isinstance(atom, Div) else "%"
    return f"(({inner}) {op} {atom.divisor})"


def _atom_key(atom) -> str:
    return atom.name if isinstance(atom, Var) else "~" + _render_atom(atom)


def evaluate(form: Lin, env: dict[str, int]) -> int:
    """The value of `form` with its variables taken from `env` (0 where absent)."""
    total = form.const
    for atom, coef in form.terms:
        total += coef * _atom_value(atom, env)
    return total


def _atom_value(atom, env: dict[str, int]) -> int:
    if isinstance(atom, Var):
        return env.get(atom.name, 0)
    inner = evaluate(atom.form, env)
    return inner // atom.divisor if isinstance(atom, Div) else inner % atom.divisor

"""Safe formulas for g: a whitelisted subset of Python compiled to torch ops.

A formula such as ``1 + 0.5*sin(q)`` (one dimension) or ``(1 + q[0], 1 + q[1])``
(two dimensions) is parsed with :mod:`ast`; every node, name and function is
checked against a whitelist and the tree is turned into a closure over torch
functions, so autograd gives derivatives of g. Nothing is ever passed to
``eval``: attribute access, calls of anything but the listed functions,
lambdas, comprehensions and names other than ``q``, ``pi`` and ``e`` are
rejected with :class:`~thermosgd.errors.UsageError`.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable

import torch

from thermosgd.errors import UsageError

__all__ = ["parse_g", "FUNCTIONS"]

#: Functions a formula may call, by name.
FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "tanh": torch.tanh,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "atan": torch.atan,
    "arctan": torch.atan,
    "sigmoid": torch.sigmoid,
    "abs": torch.abs,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_BINOPS: dict[type[ast.operator], Callable[..., torch.Tensor]] = {
    ast.Add: torch.add,
    ast.Sub: torch.sub,
    ast.Mult: torch.mul,
    ast.Div: torch.div,
    ast.Pow: torch.pow,
}
#: Limits checked before a formula is parsed or compiled, so that no formula (millions of
#: characters, parentheses nested thousands deep) can exhaust memory or the parser's stack.
_MAX_LEN = 400
_MAX_DEPTH = 32
_MAX_NODES = 200

Node = Callable[[torch.Tensor], torch.Tensor]


def parse_g(text: str, dim: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """Compile a formula in ``q`` into a torch function g.

    In one dimension the coordinate is ``q`` (``q[0]`` also works); in ``dim > 1``
    the coordinates are ``q[0]`` ... ``q[dim-1]``. A scalar formula gives the same g
    to every coordinate; a tuple ``(expr_0, ..., expr_{dim-1})`` gives one per
    coordinate.

    Args:
        text: The formula, e.g. ``"1+0.5*sin(q)"``.
        dim: Number of coordinates D.

    Returns:
        A function mapping positions ``(particles, D)`` to g ``(particles, D)``,
        built from torch ops (differentiable).

    Raises:
        UsageError: The formula does not parse, uses anything outside the
            whitelist, or is too large: more than 400 characters, brackets nested
            more than 32 deep, or more than 200 parts (checked before compiling).
    """
    if not isinstance(text, str) or not text.strip():
        raise UsageError("empty expression for g")
    _check_size(text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise UsageError(f"cannot parse expression {text!r}: {exc.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise UsageError(f"expression for g has more than {_MAX_NODES} parts (numbers, names, operations)")
    body = tree.body
    if isinstance(body, (ast.Tuple, ast.List)):
        if len(body.elts) != dim:
            raise UsageError(f"expression gives {len(body.elts)} components but dim is {dim}", param="dim")
        parts = [_compile(e, dim, text) for e in body.elts]
    else:
        parts = [_compile(body, dim, text)]

    def g(q: torch.Tensor) -> torch.Tensor:
        # "+ 0 * q" keeps a constant part (g = 1, g = pi) on q's autograd graph, so that
        # the derivatives of Eq. 9-11 exist (and are zero) as for any other g.
        cols = [torch.broadcast_to(torch.as_tensor(p(q), dtype=q.dtype), q.shape[:1]) + 0 * q[:, 0] for p in parts]
        out = torch.stack(cols, dim=-1)
        return out.expand(q.shape[0], dim) if len(parts) == 1 else out

    g.__doc__ = f"g(q) = {text}"
    return g


def _check_size(text: str) -> None:
    """Refuse a formula too long or too deeply nested to compile (before :func:`ast.parse` sees it)."""
    if len(text) > _MAX_LEN:
        raise UsageError(f"expression for g has {len(text)} characters; at most {_MAX_LEN} are accepted")
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    if deepest > _MAX_DEPTH:
        raise UsageError(
            f"expression for g nests brackets {deepest} levels deep; at most {_MAX_DEPTH} are accepted",
        )


def _compile(node: ast.AST, dim: int, text: str) -> Node:
    """Turn one whitelisted AST node into a closure ``q -> tensor``."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise UsageError(f"unsafe or unsupported constant {node.value!r} in {text!r}")
        try:
            value = float(node.value)
        except OverflowError:
            digits = str(node.value)
            raise UsageError(f"number {digits[:12]}... ({len(digits)} digits) in g is too large for a float") from None
        return lambda q: torch.tensor(value, dtype=q.dtype)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            value = _CONSTANTS[node.id]
            return lambda q: torch.tensor(value, dtype=q.dtype)
        if node.id == "q":
            if dim != 1:
                raise UsageError(f"with dim = {dim} write q[0] ... q[{dim - 1}], not q", param="dim")
            return lambda q: q[:, 0]
        raise UsageError(f"unknown name {node.id!r} in {text!r} (allowed: q, pi, e)")
    if isinstance(node, ast.Subscript):
        if not (isinstance(node.value, ast.Name) and node.value.id == "q"):
            raise UsageError(f"only q may be indexed in {text!r}")
        index = node.slice
        if not (isinstance(index, ast.Constant) and type(index.value) is int):
            raise UsageError(f"q must be indexed by an integer constant in {text!r}")
        i = index.value
        if not 0 <= i < dim:
            raise UsageError(f"q[{i}] is out of range for dimension {dim}")
        return lambda q: q[:, i]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        op = _BINOPS[type(node.op)]
        left, right = _compile(node.left, dim, text), _compile(node.right, dim, text)
        return lambda q: op(left(q), right(q))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        inner = _compile(node.operand, dim, text)
        if isinstance(node.op, ast.USub):
            return lambda q: torch.neg(inner(q))
        return inner
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            allowed = ", ".join(sorted(FUNCTIONS))
            raise UsageError(f"function {name!r} is not allowed in {text!r} (allowed: {allowed})")
        if node.keywords or len(node.args) != 1:
            raise UsageError(f"{node.func.id}() takes exactly one positional argument in {text!r}")
        fn = FUNCTIONS[node.func.id]
        arg = _compile(node.args[0], dim, text)
        return lambda q: fn(arg(q))
    raise UsageError(f"unsafe or unsupported syntax {type(node).__name__} in {text!r}")

"""A template's tree, checked and rewritten before it compiles.

TemplateShape estimates how large the values a template builds can get and refuses one
that could grow exponentially; TemplateGuard refuses unsafe syntax and routes loops,
``~`` and comparisons through the bounded helpers of the environment (templates.py).
Both walk Jinja's public node API only.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

from flowcli.sandbox import limits
from flowcli.sandbox.budget import refuse
from flowcli.sandbox.names import FORMAT_METHODS, PRIVATE_HINT
from flowcli.sandbox.template_filters import TEMPLATE_FILTERS, TEMPLATE_TESTS

_REFUSED_TEMPLATE_NODES = {
    "Macro": "macros are not allowed",
    "CallBlock": "call blocks are not allowed",
    "Include": "include is not allowed",
    "Import": "import is not allowed",
    "FromImport": "import is not allowed",
    "Extends": "extends is not allowed",
    "Block": "blocks are not allowed",
    "AssignBlock": "block assignments ({% set x %}...{% endset %}) are not allowed",
    "FilterBlock": "filter blocks are not allowed",
    "ScopedEvalContextModifier": "autoescape blocks are not allowed",
    "EvalContextModifier": "autoescape changes are not allowed",
}


def _env_call(name: str, args: list[Any], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None, lineno=lineno)


class TemplateShape:
    """Estimates, before anything runs, how large the values a template builds can get.

    ``{% set b = [a, a] %}`` makes ``b`` twice the size of ``a`` at the cost of a few
    characters, so forty such lines build a value of 2**40 shared items, which comparing,
    hashing or printing would walk in full. Each name's size is estimated from its
    definition (a list counts its items' sizes, a name the size of what it holds); a
    template whose estimate passes limits.MAX_TEMPLATE_VALUE_SIZE is refused. Jinja scopes a
    ``{% set %}`` inside a loop to one iteration, so loops cannot grow values further.
    """

    def check(self, tree: nodes.Template) -> None:
        self._statements(tree.body, {})

    def _statements(self, body: list[nodes.Node], sizes: dict[str, int]) -> None:
        for node in body:
            self._statement(node, sizes)

    def _statement(self, node: nodes.Node, sizes: dict[str, int]) -> None:
        if isinstance(node, nodes.Assign):
            self._bind(node.target, self._size(node.node, sizes), sizes)
        elif isinstance(node, nodes.For):
            inner = dict(sizes)
            self._bind(node.target, self._size(node.iter, sizes), inner)
            if node.test is not None:
                self._size(node.test, inner)
            self._statements(node.body, inner)
            self._statements(node.else_, dict(sizes))
        elif isinstance(node, nodes.If):
            self._size(node.test, sizes)
            elifs: list[list[nodes.Node]] = [[branch] for branch in node.elif_]
            branches = [node.body, *elifs, node.else_]
            results = []
            for branch in branches:
                copy = dict(sizes)
                self._statements(branch, copy)
                results.append(copy)
            for result in results:  # an {% if %} does not scope: keep the largest outcome
                for name, size in result.items():
                    sizes[name] = max(size, sizes.get(name, 0))
        elif isinstance(node, nodes.With):
            inner = dict(sizes)
            for target, value in zip(node.targets, node.values, strict=True):
                self._bind(target, self._size(value, sizes), inner)
            self._statements(node.body, inner)
        else:
            for child in node.iter_child_nodes():
                if isinstance(child, nodes.Expr):
                    self._size(child, sizes)
                else:
                    self._statement(child, sizes)

    @staticmethod
    def _bind(target: nodes.Node, size: int, sizes: dict[str, int]) -> None:
        names = [target] if isinstance(target, nodes.Name) else target.find_all(nodes.Name)
        for name in names:
            sizes[name.name] = size

    def _size(self, node: nodes.Node, sizes: dict[str, int]) -> int:
        size = self._estimate(node, sizes)
        if size > limits.MAX_TEMPLATE_VALUE_SIZE:
            refuse(
                f"line {node.lineno}: builds values that are too large (about {size:,} "
                f"shared items, limit {limits.MAX_TEMPLATE_VALUE_SIZE:,}); lists that repeat "
                "a name grow exponentially when nested"
            )
        return size

    def _estimate(self, node: nodes.Node, sizes: dict[str, int]) -> int:
        if isinstance(node, nodes.Name):
            return sizes.get(node.name, 1)
        if isinstance(node, (nodes.List, nodes.Tuple)):
            return 1 + sum(self._size(item, sizes) for item in node.items)
        if isinstance(node, nodes.Dict):
            return 1 + sum(
                self._size(pair.key, sizes) + self._size(pair.value, sizes) for pair in node.items
            )
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            for child in node.iter_child_nodes():
                self._size(child, sizes)
            return self._size(node.node, sizes)  # a part is no larger than the whole
        if isinstance(node, nodes.CondExpr):
            self._size(node.test, sizes)
            other = 1 if node.expr2 is None else self._size(node.expr2, sizes)
            return max(self._size(node.expr1, sizes), other)
        if isinstance(node, (nodes.And, nodes.Or)):
            return max(self._size(node.left, sizes), self._size(node.right, sizes))
        if isinstance(node, (nodes.Compare, nodes.Concat, nodes.Test, nodes.Not)):
            for child in node.iter_child_nodes():
                self._size(child, sizes)
            return 1  # a bool or a string
        # Filters, calls and arithmetic: at most the sum of what goes in (`x|list`, `a + b`,
        # `d.get(k, default)`, keyword arguments too); repetition with * is bounded when it
        # runs.
        children = [
            child.value if isinstance(child, nodes.Keyword) else child
            for child in node.iter_child_nodes()
        ]
        return 1 + sum(
            self._size(child, sizes) for child in children if isinstance(child, nodes.Expr)
        )


class TemplateGuard:
    """Rejects unsafe template syntax and routes loops, ``~`` and comparisons via guards.

    A small tree rewriter of our own over Jinja's public node API (``iter_fields``), so
    nothing here depends on Jinja's internal visitor or parser hooks.
    """

    def visit(self, node: nodes.Node) -> Any:
        refused = _REFUSED_TEMPLATE_NODES.get(type(node).__name__)
        if refused is not None:
            refuse(f"line {node.lineno}: {refused}")
        rewrite = getattr(self, f"visit_{type(node).__name__}", None)
        if rewrite is None:
            return self.generic_visit(node)
        return rewrite(node)

    def generic_visit(self, node: nodes.Node) -> nodes.Node:
        for name, value in node.iter_fields():
            if isinstance(value, list):
                value[:] = [
                    self.visit(item) if isinstance(item, nodes.Node) else item for item in value
                ]
            elif isinstance(value, nodes.Node):
                setattr(node, name, self.visit(value))
        return node

    def visit_For(self, node: nodes.For) -> nodes.For:
        if node.recursive:
            refuse(f"line {node.lineno}: recursive loops are not allowed")
        self.generic_visit(node)
        per_item = [*node.body, *([node.test] if node.test is not None else [])]
        cost = 1 + sum(1 + sum(1 for _ in child.find_all(nodes.Node)) for child in per_item)
        node.iter = _env_call("flowcli_loop", [node.iter, nodes.Const(cost)], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        self.generic_visit(node)
        return _env_call("flowcli_concat", list(node.nodes), node.lineno)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Call:
        self.generic_visit(node)
        args: list[Any] = [node.expr]
        for operand in node.ops:
            args += [nodes.Const(operand.op), operand.expr]
        return _env_call("flowcli_compare", args, node.lineno)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Expr:
        # Tuples are hashable, so nested ones could be hashed at enormous cost as dict keys;
        # a list behaves the same everywhere else in templates.
        self.generic_visit(node)
        if node.ctx == "load":
            return nodes.List(node.items, lineno=node.lineno)
        return node

    def visit_Name(self, node: nodes.Name) -> nodes.Name:
        # `self` is Jinja's reference to the template's blocks, not a flow name
        if node.name == "self":
            refuse(f"line {node.lineno}: unknown name 'self'")
        return node

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Getattr:
        self._check_attribute(node.attr, node.lineno)
        self.generic_visit(node)
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Getitem:
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            self._check_attribute(node.arg.value, node.lineno)
        self.generic_visit(node)
        return node

    def visit_Filter(self, node: nodes.Filter) -> nodes.Filter:
        if node.name not in TEMPLATE_FILTERS:
            refuse(f"line {node.lineno}: filter {node.name!r} is not allowed")
        self.generic_visit(node)
        return node

    def visit_Test(self, node: nodes.Test) -> nodes.Test:
        if node.name not in TEMPLATE_TESTS:
            refuse(f"line {node.lineno}: test {node.name!r} is not allowed")
        self.generic_visit(node)
        return node

    @staticmethod
    def _check_attribute(name: str, lineno: int) -> None:
        if name.startswith("_"):
            refuse(f"line {lineno}: attribute {name!r} is not allowed ({PRIVATE_HINT})")
        if name in FORMAT_METHODS:
            refuse(f"line {lineno}: method {name!r} is not allowed")

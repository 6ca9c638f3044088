"""The template language of flows: Jinja2's immutable sandbox, narrowed.

The same names as expressions plus ``speaker``, ``target`` and ``task_type``
(TEMPLATE_NAMES), the same methods, ``range`` as the only global, an allowlist of filters
and tests, StrictUndefined, and no macros, imports, includes, blocks or recursive loops.
Limits (per render) are the ones in limits.py.

Only Jinja's public API builds templates: parse, a tree check and rewrite of our own,
compile; at run time only the documented sandbox hooks (getattr, getitem, call,
call_binop, is_safe_attribute) are overridden. The hooks rely on how Jinja 3.1's code
generator calls them (e.g. the ``_loop_vars`` keyword), so pyproject.toml pins Jinja2 to
3.1.x. This is the only module that imports Jinja2; it loads when a template is compiled.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import Undefined, meta, nodes, pass_environment
from jinja2 import filters as jinja_filters
from jinja2 import tests as jinja_tests
from jinja2.environment import Environment
from jinja2.environment import Template as JinjaTemplate
from jinja2.exceptions import TemplateSyntaxError
from jinja2.runtime import Context, LoopContext, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowcli.errors import ExpressionError
from flowcli.sandbox import limits
from flowcli.sandbox.budget import (
    CURRENT_BUDGET,
    SEQUENCES,
    Budget,
    charge,
    charge_hash,
    charge_sort,
    check_length,
    iterate,
    measure,
    refuse,
    register_undefined_type,
    tick,
    to_text,
    type_name,
    walk,
)
from flowcli.sandbox.failures import describe, label, one_line, reraise_foreign
from flowcli.sandbox.names import (
    FORMAT_METHODS,
    LOOP_ATTRIBUTES,
    MESSAGE_FIELDS,
    PRIVATE_HINT,
    TEMPLATE_NAMES,
    MessageView,
)
from flowcli.sandbox.operations import (
    add_numbers,
    binop,
    call_method,
    compare,
    method_table,
    str_replace,
)

__all__ = ["TEMPLATE_NAMES", "Template", "compile_template", "validate_template"]

register_undefined_type(Undefined)


def _describe(exc: BaseException) -> str:
    """describe(), plus Jinja's syntax errors (which name their line)."""
    if isinstance(exc, TemplateSyntaxError):
        detail = exc.message or "invalid syntax"
        return one_line(f"syntax error at line {exc.lineno}: {detail}", 200)
    return describe(exc)


def _template_range(*args: Any) -> range:
    if not all(isinstance(arg, int) for arg in args):
        raise TypeError("range() arguments must be integers")
    numbers = range(*args)
    try:
        size = len(numbers)
    except OverflowError:
        size = limits.MAX_ITERATIONS + 1
    if size > limits.MAX_ITERATIONS:
        refuse(f"range() of more than {limits.MAX_ITERATIONS:,} numbers is not allowed")
    return numbers


def _counted(items: Iterator[Any], cost: int) -> Iterator[Any]:
    for item in items:
        iterate(cost)
        yield item


def _template_loop(iterable: Any, cost: int) -> Any:
    """Wraps every ``{% for %}`` iterable: each item costs the size of the loop body."""
    if isinstance(iterable, Undefined):
        return iterable  # Jinja raises the precise "is undefined" error itself
    return _counted(iter(iterable), cost)


def _template_concat(*values: Any) -> str:
    """The ``~`` operator, bounded like ``+``."""
    parts: list[str] = []
    total = 0
    for value in values:
        text = to_text(value)
        total += len(text)
        check_length(total)
        parts.append(text)
    result = "".join(parts)
    charge(len(result))
    return result


_JINJA_COMPARISONS = {
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "lteq": "<=",
    "gt": ">",
    "gteq": ">=",
    "in": "in",
    "notin": "not in",
}


def _template_compare(left: Any, *pairs: Any) -> Any:
    """A Jinja comparison chain ``a op1 b op2 c``, bounded like expression comparisons."""
    for name, right in zip(pairs[0::2], pairs[1::2], strict=True):
        if not compare(_JINJA_COMPARISONS[name], left, right):
            return False
        left = right
    return True


_TEMPLATE_HELPERS: tuple[Callable[..., Any], ...] = (
    _template_range,
    _template_loop,
    _template_concat,
    _template_compare,
)


def _text_filter(transform: Callable[[str], Any]) -> Callable[[Any], Any]:
    """Jinja's text filters call str() on anything; bound that first."""
    return lambda value: transform(to_text(value))


def _filter_int(value: Any, default: int = 0, base: int = 10) -> Any:
    if isinstance(value, str) and len(value) > limits.MAX_NUMBER_TEXT:
        refuse(f"int of text longer than {limits.MAX_NUMBER_TEXT} characters is not allowed")
    return jinja_filters.FILTERS["int"](value, default, base)


def _filter_round(value: Any, precision: int = 0, method: str = "common") -> Any:
    # jinja's ceil/floor rounding computes 10 ** precision
    if not isinstance(precision, int) or abs(precision) > 15:
        refuse("round precision must be an integer between -15 and 15")
    return jinja_filters.FILTERS["round"](value, precision, method)


@pass_environment
def _filter_join(environment: Environment, value: Any, d: Any = "", attribute: Any = None) -> str:
    separator = to_text(d)
    getter = None
    if attribute is not None:
        getter = jinja_filters.make_attrgetter(environment, attribute)
    parts: list[str] = []
    total = 0
    for item in value:
        text = to_text(getter(item) if getter is not None else item)
        total += len(text) + (len(separator) if parts else 0)
        check_length(total)
        parts.append(text)
    result = separator.join(parts)
    charge(len(result))
    return result


def _filter_replace(value: Any, old: Any, new: Any, count: Any = None) -> str:
    result = str_replace(to_text(value), to_text(old), to_text(new), -1 if count is None else count)
    charge(len(result))
    return result


def _filter_list(value: Any) -> list[Any]:
    result = list(value)
    charge(len(result))
    return result


def _sorting_filter(name: str) -> Callable[..., Any]:
    original = jinja_filters.FILTERS[name]

    @pass_environment
    def guarded(environment: Environment, value: Any, *args: Any, **kwargs: Any) -> Any:
        items = list(value)
        charge_sort(items)
        charge(len(items))
        result = original(environment, items, *args, **kwargs)
        return list(result) if isinstance(result, Iterator) else result

    return guarded


@pass_environment
def _filter_sum(environment: Environment, value: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = list(value)
    if attribute is not None:
        getter = jinja_filters.make_attrgetter(environment, attribute)
        items = [getter(item) for item in items]
    return add_numbers(items, start)


@pass_environment
def _filter_truncate(environment: Environment, value: Any, *args: Any, **kwargs: Any) -> Any:
    return jinja_filters.FILTERS["truncate"](environment, to_text(value), *args, **kwargs)


def _jinja_builtins(table: Mapping[str, Any], names: str) -> dict[str, Callable[..., Any]]:
    return {name: table[name] for name in names.split()}


# Jinja's own filters where they cannot blow up; guarded versions of the rest of the useful
# ones; nothing else (no center/indent/wordwrap/format/pprint/tojson/batch/attr/...).
_TEMPLATE_FILTERS: dict[str, Callable[..., Any]] = {
    **_jinja_builtins(
        jinja_filters.FILTERS,
        "abs count d default first float items last length map reject rejectattr reverse"
        " select selectattr",
    ),
    "capitalize": _text_filter(str.capitalize),
    "int": _filter_int,
    "join": _filter_join,
    "list": _filter_list,
    "lower": _text_filter(str.lower),
    "max": _sorting_filter("max"),
    "min": _sorting_filter("min"),
    "replace": _filter_replace,
    "round": _filter_round,
    "sort": _sorting_filter("sort"),
    "string": to_text,
    "sum": _filter_sum,
    "title": _text_filter(jinja_filters.FILTERS["title"]),
    "trim": lambda value, chars=None: to_text(value).strip(chars),
    "truncate": _filter_truncate,
    "unique": _sorting_filter("unique"),
    "upper": _text_filter(str.upper),
    "wordcount": _text_filter(jinja_filters.FILTERS["wordcount"]),
}

_TEMPLATE_TESTS: dict[str, Callable[..., Any]] = {
    **_jinja_builtins(
        jinja_tests.TESTS,
        "boolean defined false float integer iterable mapping none number sameas sequence"
        " string true undefined",
    ),
    # jinja's versions compute `value % n`, which on text is %-formatting
    "odd": lambda value: binop("%", value, 2) == 1,
    "even": lambda value: binop("%", value, 2) == 0,
    "divisibleby": lambda value, num: binop("%", value, num) == 0,
    "lower": _text_filter(str.islower),
    "upper": _text_filter(str.isupper),
}
for _symbol, _aliases in {
    "==": "== eq equalto",
    "!=": "!= ne",
    "<": "< lt lessthan",
    "<=": "<= le",
    ">": "> gt greaterthan",
    ">=": ">= ge",
    "in": "in",
}.items():
    for _alias in _aliases.split():
        _TEMPLATE_TESTS[_alias] = functools.partial(compare, _symbol)

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


class _TemplateShape:
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


class _TemplateGuard:
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
        if node.name not in _TEMPLATE_FILTERS:
            refuse(f"line {node.lineno}: filter {node.name!r} is not allowed")
        self.generic_visit(node)
        return node

    def visit_Test(self, node: nodes.Test) -> nodes.Test:
        if node.name not in _TEMPLATE_TESTS:
            refuse(f"line {node.lineno}: test {node.name!r} is not allowed")
        self.generic_visit(node)
        return node

    @staticmethod
    def _check_attribute(name: str, lineno: int) -> None:
        if name.startswith("_"):
            refuse(f"line {lineno}: attribute {name!r} is not allowed ({PRIVATE_HINT})")
        if name in FORMAT_METHODS:
            refuse(f"line {lineno}: method {name!r} is not allowed")


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox narrowed to our names, methods, filters and limits."""

    # all arithmetic goes through binop (bounded * and **, no %-formatting)
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            finalize=to_text,  # bounds what every {{ ... }} turns into text
            optimized=False,  # no constant folding: nothing user-written runs at compile time
            auto_reload=False,
        )
        self.filters = dict(_TEMPLATE_FILTERS)
        self.tests = dict(_TEMPLATE_TESTS)
        # no lipsum/cycler/joiner/namespace/dict: range is all templates need
        self.globals = {"range": _template_range}
        self.flowcli_loop = _template_loop
        self.flowcli_concat = _template_concat
        self.flowcli_compare = _template_compare

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_") or not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, MessageView):
            return attr in MESSAGE_FIELDS
        if isinstance(obj, LoopContext):
            return attr in LOOP_ATTRIBUTES
        table = method_table(obj)
        return table is not None and attr in table

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
        # Decide by type and name *before* touching the attribute: Jinja's sandbox would read
        # it first (running any property) and only then ask is_safe_attribute.
        if isinstance(obj, Undefined) or self.is_safe_attribute(obj, attribute, None):
            return super().getattr(obj, attribute)
        if isinstance(obj, Mapping):  # `vars.mood`: Jinja falls back to the key
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=attribute)
        if (obj is None or isinstance(obj, MessageView)) and not attribute.startswith("_"):
            return self.undefined(obj=obj, name=attribute)
        return self.unsafe_undefined(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        if isinstance(obj, Mapping):
            charge_hash(argument)
        if isinstance(obj, (*SEQUENCES, Mapping, range, Undefined)):
            try:
                item = obj[argument]
            except (TypeError, LookupError):
                pass
            else:
                if isinstance(argument, slice) and isinstance(item, SEQUENCES):
                    charge(len(item))
                return item
        if isinstance(argument, str):  # `x['name']` falls back to the attribute, as in Jinja
            return self.getattr(obj, argument)
        return self.undefined(obj=obj, name=argument)

    def wrap_str_format(self, value: Any) -> None:
        # Jinja would hand out a sandboxed str.format; we do not offer format at all.
        return None

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        return binop(operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        tick()
        kwargs.pop("_loop_vars", None)  # added by Jinja's code generator inside loops/blocks
        kwargs.pop("_block_vars", None)
        if any(obj is helper for helper in _TEMPLATE_HELPERS):
            return obj(*args, **kwargs)
        if isinstance(obj, Undefined):
            return obj(*args, **kwargs)  # raises the precise undefined/unsafe error
        if isinstance(obj, types.BuiltinMethodType) and method_table(obj.__self__) is not None:
            if kwargs:
                refuse("keyword arguments are not allowed in method calls")
            return call_method(obj.__self__, obj.__name__, list(args))
        if isinstance(obj, types.MethodType) and isinstance(obj.__self__, LoopContext):
            if obj.__name__ == "changed":
                # loop.changed(x) compares x with the previous call's value: at most the
                # size of x, which shared nested lists can make enormous
                cost = measure(list(args))[0]
                if cost > limits.MAX_COMPARE_WORK:
                    refuse("values are too large to compare")
                walk(cost)
            return super().call(context, obj, *args, **kwargs)
        refuse(f"calling a {type_name(obj)} value is not allowed")


@functools.cache
def _environment() -> SandboxEnvironment:
    return SandboxEnvironment()


class Template:
    """A validated template; immutable and safe to share. Build with compile_template."""

    __slots__ = ("source", "names_used", "_template")

    def __init__(self, source: str, names_used: frozenset[str], template: JinjaTemplate) -> None:
        self.source = source
        self.names_used = names_used
        self._template = template

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def render(self, names: Mapping[str, Any]) -> str:
        """The rendered text; every failure is an ExpressionError."""
        token = CURRENT_BUDGET.set(Budget())
        stream: Iterator[str] | None = None
        try:
            # Only the names the template reads, so a lazy mapping loads nothing else.
            context: dict[str, Any] = {}
            for name in self.names_used:
                # a missing one is reported by StrictUndefined if the template reaches it
                with contextlib.suppress(KeyError):
                    context[name] = names[name]
            stream = self._template.generate(context)
            chunks: list[str] = []
            total = 0
            for chunk in stream:
                tick()
                total += len(chunk)
                if total > limits.MAX_OUTPUT_LENGTH:
                    refuse(f"output is longer than {limits.MAX_OUTPUT_LENGTH:,} characters")
                chunks.append(chunk)
            return "".join(chunks)
        except Exception as exc:
            reraise_foreign(exc)
            raise ExpressionError(f"{label('template', self.source)}: {_describe(exc)}") from exc
        finally:
            if isinstance(stream, types.GeneratorType):
                stream.close()
            CURRENT_BUDGET.reset(token)


def compile_template(source: str, *, allowed_names: frozenset[str] = TEMPLATE_NAMES) -> Template:
    """Validate and compile ``source`` once (cached); raises ExpressionError."""
    if not isinstance(source, str):
        raise ExpressionError(f"template must be text, not {type_name(source)}")
    try:
        names = frozenset(allowed_names)
    except TypeError as exc:
        raise ExpressionError(f"allowed names must be a set of strings ({exc})") from None
    return _compile_template(source, names)


@functools.lru_cache(maxsize=256)
def _compile_template(source: str, allowed_names: frozenset[str]) -> Template:
    try:
        if len(source) > limits.MAX_TEMPLATE_LENGTH:
            refuse(
                f"template is too long ({len(source):,} characters, "
                f"limit {limits.MAX_TEMPLATE_LENGTH:,})"
            )
        environment = _environment()
        # Only Jinja's public API: parse, check and rewrite the tree, compile the tree.
        tree = environment.parse(source)
        _TemplateShape().check(tree)
        tree = _TemplateGuard().visit(tree)
        tree.set_environment(environment)
        undeclared = meta.find_undeclared_variables(tree)
        unknown = sorted(undeclared - allowed_names - set(environment.globals))
        if unknown:
            listed = ", ".join(repr(name) for name in unknown)
            known = ", ".join(sorted(allowed_names))
            refuse(f"unknown name{'s' if len(unknown) > 1 else ''} {listed} (known names: {known})")
        compiled = environment.from_string(tree)
    except Exception as exc:
        raise ExpressionError(f"{label('template', source)}: {_describe(exc)}") from None
    return Template(source, frozenset(undeclared & allowed_names), compiled)


def validate_template(source: str) -> str | None:
    """None when ``source`` is a valid template, else the error message."""
    try:
        compile_template(source)
    except ExpressionError as exc:
        return exc.message
    return None

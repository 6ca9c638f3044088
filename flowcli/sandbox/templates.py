"""The template language of flows: Jinja2's immutable sandbox, narrowed.

The same names as expressions plus ``speaker``, ``target`` and ``task_type``
(TEMPLATE_NAMES), the same methods, ``range`` as the only global, an allowlist of filters
and tests, StrictUndefined, and no macros, imports, includes, blocks or recursive loops.
Limits (per render) are the ones in limits.py.

Only Jinja's public API builds templates: parse, a tree check and rewrite of our own,
compile; at run time only the documented sandbox hooks (getattr, getitem, call,
call_binop, is_safe_attribute) are overridden. The hooks rely on how Jinja 3.1's code
generator calls them (e.g. the ``_loop_vars`` keyword), so pyproject.toml pins Jinja2 to
3.1.x. Only this module and the two it uses (template_checks, template_filters) import
Jinja2; they load when a template is first compiled.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import Undefined, meta
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
from flowcli.sandbox.failures import (
    checked_source,
    describe,
    label,
    one_line,
    reraise_foreign,
)
from flowcli.sandbox.names import (
    LOOP_ATTRIBUTES,
    MESSAGE_FIELDS,
    TEMPLATE_NAMES,
    MessageView,
)
from flowcli.sandbox.operations import (
    binop,
    call_method,
    compare,
    method_table,
    named,
)
from flowcli.sandbox.template_checks import TemplateGuard, TemplateShape
from flowcli.sandbox.template_filters import TEMPLATE_FILTERS, TEMPLATE_TESTS

__all__ = ["TEMPLATE_NAMES", "Template", "compile_template", "validate_template"]

register_undefined_type(Undefined)


def _describe(exc: BaseException) -> str:
    """describe(), plus Jinja's syntax errors (which name their line)."""
    if isinstance(exc, TemplateSyntaxError):
        detail = exc.message or "invalid syntax"
        return one_line(f"syntax error at line {exc.lineno}: {detail}", 200)
    return describe(exc)


@named("range")
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
        self.filters = dict(TEMPLATE_FILTERS)
        self.tests = dict(TEMPLATE_TESTS)
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
    return _compile_template(source, checked_source("template", source, allowed_names))


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
        TemplateShape().check(tree)
        tree = TemplateGuard().visit(tree)
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

"""The sandbox's limits, per expression, template, evaluation or render.

Conservative on purpose: conditions and responder templates are small, and every limit is
checked *before* the work is done, so a hostile flow fails in milliseconds, not on OOM.
The other sandbox modules read these as ``limits.MAX_...`` when they run, so a test or a
benchmark can lift one by patching this module.
"""

from __future__ import annotations

MAX_EXPRESSION_LENGTH = 10_000  # characters of expression source
MAX_TEMPLATE_LENGTH = 100_000  # characters of template source
MAX_DEPTH = 50  # nesting of expression syntax (parentheses, operators, calls ...)
MAX_FOR_CLAUSES = 3  # `for` clauses in one comprehension
MAX_COMPREHENSION_NESTING = 2  # a comprehension inside another's iterable, item or condition
MAX_STRING_LENGTH = 100_000  # characters/items of any str, list or tuple an operation builds
MAX_INT_BITS = 4_096  # integers from * and ** (about 1,233 decimal digits)
MAX_NUMBER_TEXT = 100  # characters int() will parse
MAX_ITERATIONS = 10_000  # loop/comprehension items and range() length, per evaluation
MAX_WORK = 2_000_000  # sum over loop iterations of the loop body's size, per evaluation
MAX_ALLOCATION = 10_000_000  # characters/items created in total, per evaluation
MAX_COMPARE_WORK = 200_000  # expanded size of one value compared, sorted or hashed
MAX_WALK = 20_000_000  # expanded items hashed, compared, sorted or printed, per evaluation
MAX_TEMPLATE_VALUE_SIZE = 100_000  # a template's statically estimated value size ({% set %})
MAX_CPU_SECONDS = 1.0  # CPU time of one evaluation or render, checked while it runs
MAX_OUTPUT_LENGTH = 1_000_000  # characters of rendered template output

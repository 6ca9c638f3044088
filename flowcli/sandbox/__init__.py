"""The sandboxed language of flows: expressions (conditions, selectors) and templates.

Everything a flow's author may write inside a condition or a responder template, and the
limits that keep every evaluation cheap, lives here, below the flow model and the engine
(``flows`` validates with it, ``engine`` evaluates with it; it imports only
``flowcli.errors``). One concern per module:

- ``limits``      the MAX_* numbers (read at call time, so tests and benchmarks can patch them);
- ``names``       the names flows may read and the MessageView they see;
- ``budget``      what one evaluation has spent (allocation, loop work, walking, CPU time),
                  and the measuring of values before they are hashed, compared or printed;
- ``operations``  the functions, methods and operators both languages allow, each bounded;
- ``failures``    how a refusal or error becomes one short ExpressionError line;
- ``expressions`` the expression language: an evaluator of our own over Python's ``ast``;
- ``templates``   the template language: Jinja2's sandbox, narrowed, with
                  ``template_filters`` (the allowed filters and tests) and
                  ``template_checks`` (the tree checked and rewritten before it compiles).

Decisions. The expression evaluator is owned outright: every node type it admits is
checked and evaluated here (simpleeval was dropped; nothing of it remains). Templates use
Jinja2's public API only (parse, a tree rewrite of our own, compile, the documented
sandbox hooks), and pyproject.toml pins Jinja2 to 3.1.x because the hooks rely on how
3.1's code generator calls them. Only the template modules import Jinja2, so
evaluating an expression (a selector, a condition) never pays for loading it.

This face re-exports nothing on purpose: ``from flowcli.sandbox.expressions import ...``
must not load Jinja2 as a side effect.
"""

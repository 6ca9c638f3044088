"""The names a step's expressions and template see (round, step, vars, last, messages…).

``last`` and ``messages`` are read from the database only when an expression uses them;
the runner reads them before it evaluates anything (``LazyNames.preload``), so no
evaluation reads the database. Breakpoints (flowcli.engine.breakpoints) use the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from typing import Any


class LazyNames(Mapping[str, Any]):
    """Expression names; ``last`` and ``messages`` are read only if an expression uses them."""

    def __init__(self, values: dict[str, Any], loaders: dict[str, Callable[[], Any]]) -> None:
        self._values = values
        self._loaders = loaders

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        if key in self._loaders:
            value = self._loaders[key]()
            self._values[key] = value
            return value
        raise KeyError(key)

    def __iter__(self) -> Any:
        return iter({*self._values, *self._loaders})

    def __len__(self) -> int:
        return len({*self._values, *self._loaders})

    def preload(self, keys: Set[str]) -> None:
        """Read now the loaded names among ``keys`` (so an evaluation reads nothing)."""
        for key in keys & self._loaders.keys():
            self[key]

    def with_new_message(self, view: Any, executed: int) -> LazyNames:
        values = dict(self._values)
        values["executed_steps"] = executed
        loaders = dict(self._loaders)
        if view is not None:
            values["last"] = view
            if "messages" in self._values:
                values["messages"] = [*self._values["messages"], view]
            elif "messages" in loaders:
                old = loaders["messages"]
                loaders["messages"] = lambda: [*old(), view]
        return LazyNames(values, loaders)


_MESSAGE_VIEW: Any = None


def message_view(row: tuple[Any, ...] | None) -> Any:
    global _MESSAGE_VIEW
    if row is None:
        return None
    view = _MESSAGE_VIEW
    if view is None:
        # Imported on first use (not at import), then kept: a step makes a view or two.
        from flowcli.sandbox.names import MessageView

        view = _MESSAGE_VIEW = MessageView
    mid, speaker, target, content, section, round_index = row
    return view(
        id=mid,
        speaker=speaker,
        target=target,
        content=content,
        section=section,
        round=round_index,
    )

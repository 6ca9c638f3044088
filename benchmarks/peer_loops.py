"""The two-step loop in Apache Burr and in LangGraph, persisted to SQLite every step.

Run by peers.py with each framework's own interpreter (its own venv), never imported by
flowcli. Only the standard library and the framework named on the command line are
imported.

    python peer_loops.py burr|langgraph fixed|growing DB STEPS normal|full

Both loops do what flowcli's benchmark flow does: speaker A, then B, then A again, each
step writing a message of about 1 KB ("[A → B] ask_question on "<topic>" (round 1, step
1, loop N)"). ``fixed``: the state is one such string, replaced every step. ``growing``:
the state is the list of every message so far; each step appends one. Each framework
persists in its documented way: Burr's SQLitePersister saves the state after every step
(``with_state_persister``); LangGraph's SqliteSaver checkpoints after every step, with
``durability="sync"`` so a step is on disk before the next one starts, as in flowcli.
Both get a connection opened in WAL mode at the synchronous level given, the same as
flowcli's. Prints one JSON line: steps run, rows persisted, and the seconds the steps
took (from the first step to the last, leaving out imports and building the app, whose
time in a fresh process varies by seconds and would drown a short run).
"""

# No ``from __future__ import annotations``: LangGraph reads the State annotations at
# run time, and they name typing objects imported here.
import json
import operator
import sqlite3
import sys
import time
from typing import Annotated, Any, TypedDict

TOPIC = ("a topic of about one kilobyte " * 34)[:960]


def message(speaker: str, target: str, task: str, n: int) -> str:
    loop = f", loop {n // 2}" if n >= 2 else ""
    step = 1 if speaker == "A" else 2
    return f'[{speaker} → {target}] {task} on "{TOPIC}" (round 1, step {step}{loop})'


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    return conn


def run_burr(case: str, path: str, steps: int, synchronous: str) -> dict[str, Any]:
    from burr.core import ApplicationBuilder, State, action, default
    from burr.core.persistence import SQLitePersister

    if case == "fixed":

        @action(reads=["n"], writes=["text", "n"])
        def ask(state: State) -> State:
            return state.update(
                text=message("A", "B", "ask_question", state["n"]), n=state["n"] + 1
            )

        @action(reads=["n"], writes=["text", "n"])
        def answer(state: State) -> State:
            return state.update(
                text=message("B", "A", "answer_question", state["n"]), n=state["n"] + 1
            )

        initial: dict[str, Any] = {"text": "", "n": 0}
    else:

        @action(reads=["n", "messages"], writes=["messages", "n"])
        def ask(state: State) -> State:
            msg = message("A", "B", "ask_question", state["n"])
            return state.append(messages=msg).update(n=state["n"] + 1)

        @action(reads=["n", "messages"], writes=["messages", "n"])
        def answer(state: State) -> State:
            msg = message("B", "A", "answer_question", state["n"])
            return state.append(messages=msg).update(n=state["n"] + 1)

        initial = {"messages": [], "n": 0}

    persister = SQLitePersister(path, connection=connect(path, synchronous))
    persister.initialize()
    app = (
        ApplicationBuilder()
        .with_actions(ask=ask, answer=answer)
        .with_transitions(("ask", "answer", default), ("answer", "ask", default))
        .with_state(**initial)
        .with_entrypoint("ask")
        .with_state_persister(persister)
        .with_identifiers(app_id="bench")
        .build()
    )
    start = time.perf_counter()
    for _ in range(steps):
        app.step()
    seconds = time.perf_counter() - start
    rows = persister.connection.execute("SELECT count(*) FROM burr_state").fetchone()[0]
    persister.connection.close()
    ran = app.sequence_id + 1 if app.sequence_id is not None else 0
    return {"steps": ran, "rows": rows, "seconds": seconds}


def run_langgraph(case: str, path: str, steps: int, synchronous: str) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    if case == "fixed":

        class State(TypedDict):
            text: str
            n: int

        def ask(state: State) -> dict[str, Any]:
            return {"text": message("A", "B", "ask_question", state["n"]), "n": state["n"] + 1}

        def answer(state: State) -> dict[str, Any]:
            return {"text": message("B", "A", "answer_question", state["n"]), "n": state["n"] + 1}

        initial: dict[str, Any] = {"text": "", "n": 0}
    else:

        class State(TypedDict):  # type: ignore[no-redef]
            messages: Annotated[list[str], operator.add]
            n: int

        def ask(state: State) -> dict[str, Any]:
            msg = message("A", "B", "ask_question", state["n"])
            return {"messages": [msg], "n": state["n"] + 1}

        def answer(state: State) -> dict[str, Any]:
            msg = message("B", "A", "answer_question", state["n"])
            return {"messages": [msg], "n": state["n"] + 1}

        initial = {"messages": [], "n": 0}

    def after(next_node: str) -> Any:
        return lambda state: END if state["n"] >= steps else next_node

    graph = StateGraph(State)
    graph.add_node("ask", ask)
    graph.add_node("answer", answer)
    graph.add_edge(START, "ask")
    graph.add_conditional_edges("ask", after("answer"))
    graph.add_conditional_edges("answer", after("ask"))
    conn = connect(path, synchronous)
    app = graph.compile(checkpointer=SqliteSaver(conn))
    start = time.perf_counter()
    final = app.invoke(
        initial,
        {"configurable": {"thread_id": "bench"}, "recursion_limit": steps + 10},
        durability="sync",
    )
    seconds = time.perf_counter() - start
    rows = conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
    conn.close()
    return {"steps": final["n"], "rows": rows, "seconds": seconds}


def main() -> int:
    framework, case, path, steps, synchronous = sys.argv[1:6]
    run = {"burr": run_burr, "langgraph": run_langgraph}[framework]
    print(json.dumps(run(case, path, int(steps), synchronous)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

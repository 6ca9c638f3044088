"""Flow validation: a table of malformed flows and the exact problem each must report,
plus the examples, the export round trip, aliases, order defaults and file loading."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flowcli.errors import FlowValidationError
from flowcli.flows.spec import (
    CONTEXT_KEYWORDS,
    FLOW_TYPES,
    TASK_TYPES,
    FlowDocument,
    StepSpec,
    dump_flow_yaml,
    flow_to_dict,
    load_flow_file,
    parse_flow_text,
    validate_flow,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ROLES = """
roles:
  Teacher: {prompt: You teach.}
  Student: {prompt: You learn.}
"""


def flow(steps: str, extra: str = "", roles: str = ROLES) -> str:
    """A flow named Test with the Teacher/Student roles, ``extra`` top-level keys and ``steps``."""
    return "name: Test\n" + roles.strip() + "\n" + textwrap.dedent(extra) + textwrap.dedent(steps)


ONE_STEP = """
steps:
  - speaker_role_ref: Teacher
    task_type: ask_question
"""


def problems_of(text: str, known_roles: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(FlowValidationError) as info:
        validate_flow(parse_flow_text(text, "flow.yaml"), "flow.yaml", known_roles)
    return info.value.problems


# (case id, YAML text, a message that must be among the problems, as a substring)
MALFORMED = [
    (
        "unknown-step-key",
        flow("""
            steps:
              - speeker_role_ref: Teacher
                task_type: ask_question
            """),
        "flow.yaml: steps[0]: unknown key 'speeker_role_ref'; did you mean 'speaker_role_ref'?",
    ),
    (
        "unknown-top-key",
        flow(ONE_STEP, "nmae: Typo\n"),
        "flow.yaml: unknown key 'nmae'; did you mean 'name'?",
    ),
    (
        "unknown-logic-key",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {next_step_order: 1, max_loop: 2}
            """),
        "flow.yaml: steps[0].logic_config: unknown key 'max_loop'; did you mean 'max_loops'?",
    ),
    (
        "unknown-key-far-from-any",
        flow(ONE_STEP, "zzzzzz: 1\n"),
        "flow.yaml: unknown key 'zzzzzz' (allowed: name, topic, type, description, version,",
    ),
    (
        "missing-name",
        ROLES + ONE_STEP,
        "flow.yaml: missing required key 'name'",
    ),
    (
        "missing-steps",
        "name: Test\n" + ROLES,
        "flow.yaml: missing required key 'steps'",
    ),
    (
        "missing-speaker",
        flow("""
            steps:
              - task_type: ask_question
            """),
        "flow.yaml: steps[0]: missing required key 'speaker_role_ref'",
    ),
    (
        "missing-task-type",
        flow("""
            steps:
              - speaker_role_ref: Teacher
            """),
        "flow.yaml: steps[0]: missing required key 'task_type'",
    ),
    (
        "steps-not-a-list",
        flow('steps: "abc"\n'),
        "flow.yaml: steps: expected a list of steps, got 'abc'",
    ),
    (
        "step-not-a-mapping",
        flow("steps:\n  - just text\n"),
        "flow.yaml: steps[0]: expected a step (a mapping with speaker_role_ref, task_type, ...),"
        " got 'just text'",
    ),
    (
        "max-loops-word",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {next_step_order: 1, max_loops: many}
            """),
        "flow.yaml: steps[0].logic_config.max_loops: expected an integer, got 'many'",
    ),
    (
        "max-loops-quoted-number",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {next_step_order: 1, max_loops: "3"}
            """),
        "flow.yaml: steps[0].logic_config.max_loops: expected an integer, got '3'",
    ),
    (
        "max-loops-boolean",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {next_step_order: 1, max_loops: true}
            """),
        "flow.yaml: steps[0].logic_config.max_loops: expected an integer, got true",
    ),
    (
        "order-float",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                order: 1.5
            """),
        "flow.yaml: steps[0].order: expected an integer, got 1.5",
    ),
    (
        "roles-a-list",
        "name: Test\nroles: [Teacher, Student]\n" + ONE_STEP,
        "flow.yaml: roles: expected a mapping of role names to {prompt: ...}, got a list",
    ),
    (
        "role-without-prompt",
        flow(ONE_STEP, roles="roles:\n  Teacher: {}\n"),
        "flow.yaml: roles.Teacher: missing required key 'prompt'",
    ),
    (
        "version-a-number",
        flow(ONE_STEP, "version: 1.10\n"),
        "flow.yaml: version: expected a string, got 1.1 (quote it to make it text)",
    ),
    (
        "unknown-flow-type",
        flow(ONE_STEP, "type: lecture\n"),
        "flow.yaml: type: expected one of teaching, review, debate, discussion, interview, other,"
        " got 'lecture'",
    ),
    (
        "unknown-task-type",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_questions
            """),
        "flow.yaml: steps[0].task_type: unknown task_type 'ask_questions'; did you mean"
        " 'ask_question'? (allowed: ask_question, answer_question, review_answer, question,"
        " summarize, evaluate, suggest, challenge, support, conclude, comment)",
    ),
    (
        "unknown-context-keyword",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                context_scope: lastround
            """),
        "flow.yaml: steps[0].context_scope: 'lastround' is neither a context scope (none, all,"
        " last_message, last_round, last_n_messages, __TOPIC__) nor a role of this flow;"
        " did you mean 'last_round'?",
    ),
    (
        "context-list-unknown-role",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                context_scope: [Student, Parent]
            """),
        "flow.yaml: steps[0].context_scope[1]: unknown role 'Parent': not a role of this flow",
    ),
    (
        "context-list-keyword",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                context_scope: [all, Student]
            """),
        "flow.yaml: steps[0].context_scope[0]: 'all' is a context keyword; a list holds role"
        " names only (use 'all' on its own)",
    ),
    (
        "context-scope-number",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                context_scope: 5
            """),
        "flow.yaml: steps[0].context_scope: expected one of none, all, last_message, last_round,"
        " last_n_messages, __TOPIC__, a role name or a list of role names, got 5",
    ),
    (
        "context-param-n-zero",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                context_scope: last_n_messages
                context_param: {n: 0}
            """),
        "flow.yaml: steps[0].context_param: n must be an integer >= 1 (messages to show), got 0",
    ),
    (
        "duplicate-order",
        flow("""
            steps:
              - {speaker_role_ref: Teacher, task_type: ask_question, order: 1}
              - {speaker_role_ref: Student, task_type: answer_question, order: 1}
            """),
        "flow.yaml: steps[1].order: duplicate order 1: steps[0] has it too",
    ),
    (
        "duplicate-order-with-default",
        flow("""
            steps:
              - {speaker_role_ref: Teacher, task_type: ask_question}
              - {speaker_role_ref: Student, task_type: answer_question, order: 1}
            """),
        "flow.yaml: steps[1].order: duplicate order 1: steps[0] has it too (it has no order,"
        " so its position counts)",
    ),
    (
        "order-gap",
        flow("""
            steps:
              - {speaker_role_ref: Teacher, task_type: ask_question, order: 1}
              - {speaker_role_ref: Student, task_type: answer_question, order: 3}
            """),
        "flow.yaml: steps[1].order: 3 is out of range: orders run 1..2 without gaps, one per step",
    ),
    (
        "order-zero",
        flow("""
            steps:
              - {speaker_role_ref: Teacher, task_type: ask_question, order: 0}
            """),
        "flow.yaml: steps[0].order: must be >= 1, got 0",
    ),
    (
        "loop-points-forward",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {next_step_order: 2, max_loops: 1}
              - speaker_role_ref: Student
                task_type: answer_question
            """),
        "flow.yaml: steps[0].logic_config.next_step_order: 2 points forward (this step's order"
        " is 1); a loop jumps back to this step or an earlier one",
    ),
    (
        "loop-target-missing",
        flow("""
            steps:
              - {speaker_role_ref: Teacher, task_type: ask_question}
              - {speaker_role_ref: Student, task_type: answer_question}
              - speaker_role_ref: Teacher
                task_type: review_answer
                logic_config: {next_step_order: 7, max_loops: 1}
            """),
        "flow.yaml: steps[2].logic_config.next_step_order: 7 is not a step order (1..3)",
    ),
    (
        "loops-cross",
        flow("""
            steps:
              - {speaker_role_ref: Teacher, task_type: ask_question}
              - {speaker_role_ref: Student, task_type: answer_question}
              - speaker_role_ref: Teacher
                task_type: review_answer
                logic_config: {next_step_order: 1, max_loops: 1}
              - speaker_role_ref: Student
                task_type: comment
                logic_config: {next_step_order: 2, max_loops: 1}
            """),
        "flow.yaml: steps[3].logic_config.next_step_order: this loop (orders 2..4) crosses the"
        " loop of steps[2] (orders 1..3); loops must nest or be separate",
    ),
    (
        "unbounded-loop",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {next_step_order: 1}
            """),
        "flow.yaml: steps[0].logic_config: next_step_order without max_loops would loop forever;"
        " add max_loops",
    ),
    (
        "max-loops-without-target",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {max_loops: 2}
            """),
        "flow.yaml: steps[0].logic_config: max_loops without next_step_order has no loop to bound",
    ),
    (
        "negative-max-loops",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {next_step_order: 1, max_loops: -1}
            """),
        "flow.yaml: steps[0].logic_config.max_loops: must be >= 0, got -1",
    ),
    (
        "unknown-speaker",
        flow("""
            steps:
              - speaker_role_ref: Teachr
                task_type: ask_question
            """),
        "flow.yaml: steps[0].speaker_role_ref: unknown role 'Teachr': it is neither defined"
        " under roles nor an existing role; did you mean 'Teacher'?",
    ),
    (
        "unknown-target",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                target_role_ref: Nobody
                task_type: ask_question
            """),
        "flow.yaml: steps[0].target_role_ref: unknown role 'Nobody': it is neither defined"
        " under roles nor an existing role",
    ),
    (
        "condition-syntax",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {condition: "round >="}
            """),
        'flow.yaml: steps[0].logic_config.condition: expression "round >=": invalid syntax',
    ),
    (
        "condition-unknown-name",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {condition: "rounds > 1"}
            """),
        'flow.yaml: steps[0].logic_config.condition: expression "rounds > 1": unknown name'
        " 'rounds'",
    ),
    (
        "exit-expr-syntax",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config:
                  next_step_order: 1
                  max_loops: 1
                  exit_condition: {type: expression, expr: "'agree' in (last.content"}
            """),
        "flow.yaml: steps[0].logic_config.exit_condition.expr: expression"
        " \"'agree' in (last.content\": invalid syntax at column 12",
    ),
    (
        "end-condition-syntax",
        flow(ONE_STEP, "termination_config: {end_condition: 'round >> >'}\n"),
        'flow.yaml: termination_config.end_condition: expression "round >> >": invalid syntax',
    ),
    (
        "template-syntax",
        flow(ONE_STEP, "responder: {type: template, template: '{{ speaker '}\n"),
        'flow.yaml: responder.template: template "{{ speaker": syntax error at line 1',
    ),
    (
        "unknown-responder-type",
        flow(ONE_STEP, "responder: {type: anthropic}\n"),
        "flow.yaml: responder.type: expected one of template, openai, got 'anthropic'",
    ),
    (
        "exit-expression-without-expr",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config:
                  next_step_order: 1
                  max_loops: 1
                  exit_condition: {type: expression}
            """),
        "flow.yaml: steps[0].logic_config.exit_condition: type 'expression' needs an expr",
    ),
    (
        "accept-flag-with-expr",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config:
                  next_step_order: 1
                  max_loops: 1
                  exit_condition: {type: llm_accept_flag, expr: "True"}
            """),
        "flow.yaml: steps[0].logic_config.exit_condition: type 'llm_accept_flag' takes no expr",
    ),
    (
        "exit-condition-a-string",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {next_step_order: 1, max_loops: 1, exit_condition: "1"}
            """),
        "flow.yaml: steps[0].logic_config.exit_condition: expected a mapping like"
        " {type: expression, expr: ...} or {type: llm_accept_flag}, got '1'",
    ),
    (
        "exit-condition-without-loop",
        flow("""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                logic_config: {exit_condition: {type: llm_accept_flag}}
            """),
        "flow.yaml: steps[0].logic_config: exit_condition without next_step_order has no loop"
        " to exit",
    ),
    (
        "yaml-syntax",
        "name: Test\nsteps:\n  - speaker_role_ref: Teacher: x\n",
        "flow.yaml:3:30: mapping values are not allowed here",
    ),
    (
        "yaml-bad-indentation",
        "name: Test\nsteps:\n  - speaker_role_ref: Teacher\n   task_type: x\n",
        "flow.yaml:4:4: expected <block end>, but found '<block mapping start>' (while parsing a"
        " block collection at line 3, column 3)",
    ),
    (
        "yaml-unclosed-list",
        "name: Test\nsteps: [\n",
        "flow.yaml:3:1: expected the node content, but found '<stream end>' (while parsing a flow"
        " node)",
    ),
    (
        "yaml-unclosed-quote",
        "name: 'Test\nsteps: []\n",
        "flow.yaml:3:1: found unexpected end of stream (while scanning a quoted scalar at line 1,"
        " column 7)",
    ),
    (
        "yaml-python-tag-refused",
        "name: !!python/object:os.system x\nsteps: []\n",
        "flow.yaml:1:7: could not determine a constructor for the tag"
        " 'tag:yaml.org,2002:python/object:os.system'",
    ),
    (
        "yaml-duplicate-key",
        "name: Test\nsteps:\n  - task_type: ask_question\n    task_type: comment\n",
        "flow.yaml:4:5: found duplicate key 'task_type' (while constructing a mapping at line 3,"
        " column 5)",
    ),
    (
        "yaml-top-level-list",
        "- name: Test\n",
        "flow.yaml: the flow must be a mapping, got list",
    ),
    (
        "yaml-empty-document",
        "# nothing but a comment\n",
        "flow.yaml: the flow must be a mapping, got an empty document",
    ),
    (
        "empty-step-list",
        flow("steps: []\n"),
        "flow.yaml: steps: the flow has no steps; add at least one",
    ),
    (
        "empty-name",
        'name: ""\n' + ONE_STEP,
        "flow.yaml: name: must not be empty",
    ),
    (
        "blank-name",
        'name: "   "\n' + ONE_STEP,
        "flow.yaml: name: must not be blank",
    ),
    (
        "name-too-long",
        f"name: {'n' * 201}\n" + ONE_STEP,
        "flow.yaml: name: is too long: 201 characters, at most 200",
    ),
    (
        "speaker-ref-too-long",
        flow(f"""
            steps:
              - speaker_role_ref: {"S" * 51}
                task_type: ask_question
            """),
        "flow.yaml: steps[0].speaker_role_ref: is too long: 51 characters, at most 50",
    ),
    (
        "step-description-too-long",
        flow(f"""
            steps:
              - speaker_role_ref: Teacher
                task_type: ask_question
                description: {"d" * 501}
            """),
        "flow.yaml: steps[0].description: is too long: 501 characters, at most 500",
    ),
    (
        "max-rounds-zero",
        flow(ONE_STEP, "termination_config: {max_rounds: 0}\n"),
        "flow.yaml: termination_config.max_rounds: must be >= 1, got 0",
    ),
    (
        "alias-and-canonical",
        flow("""
            steps:
              - speaker: Teacher
                speaker_role_ref: Teacher
                task_type: ask_question
            """),
        "flow.yaml: steps[0]: 'speaker' is an alias of 'speaker_role_ref'; give only one of them",
    ),
    (
        "role-name-not-text",
        flow(ONE_STEP, roles="roles:\n  Teacher: {prompt: x}\n  7: {prompt: y}\n"),
        "flow.yaml: roles: a role name must be a string, got 7 (quote it)",
    ),
]


def test_the_table_is_large_and_ids_are_unique() -> None:
    ids = [case[0] for case in MALFORMED]
    assert len(ids) >= 25
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_flow_reports_problem(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert any(expected in problem for problem in problems), problems
    for problem in problems:
        assert problem.startswith("flow.yaml")
        assert len(problem.splitlines()) == 1
        assert "pydantic" not in problem and "http" not in problem


def test_every_problem_is_reported_at_once() -> None:
    text = flow("""
        nmae: typo
        steps:
          - speaker_role_ref: Teachr
            task_type: ask
          - speaker_role_ref: Student
            task_type: answer_question
            logic_config: {next_step_order: 9, max_loops: many}
          - speaker_role_ref: Student
            task_type: comment
            order: 2
        """)
    problems = problems_of(text)
    assert problems == [
        "flow.yaml: unknown key 'nmae'; did you mean 'name'?",
        "flow.yaml: steps[0].task_type: unknown task_type 'ask' (allowed: "
        + ", ".join(TASK_TYPES)
        + ")",
        "flow.yaml: steps[0].speaker_role_ref: unknown role 'Teachr': it is neither defined under"
        " roles nor an existing role; did you mean 'Teacher'?",
        "flow.yaml: steps[1].logic_config.max_loops: expected an integer, got 'many'",
        "flow.yaml: steps[1].logic_config.next_step_order: 9 is not a step order (1, 2)",
        "flow.yaml: steps[2].order: duplicate order 2: steps[1] has it too (it has no order,"
        " so its position counts)",
    ]
    with pytest.raises(FlowValidationError) as info:
        validate_flow(parse_flow_text(text, "flow.yaml"), "flow.yaml")
    assert str(info.value) == problems[0] + " (and 5 more problem(s))"


def test_source_names_the_file_in_every_message() -> None:
    with pytest.raises(FlowValidationError) as info:
        validate_flow({"name": "x", "steps": [{}]}, "flows/broken.yaml")
    assert info.value.problems == [
        "flows/broken.yaml: steps[0]: missing required key 'speaker_role_ref'",
        "flows/broken.yaml: steps[0]: missing required key 'task_type'",
    ]
    assert info.value.data["source"] == "flows/broken.yaml"


def test_a_typo_is_reported_before_the_key_it_hides() -> None:
    with pytest.raises(FlowValidationError) as info:
        validate_flow(
            {"name": "x", "steps": [{"speeker_role_ref": "A", "task_type": "comment"}]},
            "f.yaml",
            known_roles=["A"],
        )
    assert info.value.problems == [
        "f.yaml: steps[0]: unknown key 'speeker_role_ref'; did you mean 'speaker_role_ref'?",
        "f.yaml: steps[0]: missing required key 'speaker_role_ref'",
    ]


def test_roles_known_to_the_database_are_accepted() -> None:
    text = flow(
        """
        steps:
          - speaker_role_ref: Marketing Manager
            target_role_ref: Teacher
            task_type: question
            context_scope: [Marketing Manager, Quality Manager]
        """
    )
    data = parse_flow_text(text, "flow.yaml")
    problems = problems_of(text)
    assert "flow.yaml: steps[0].speaker_role_ref: unknown role 'Marketing Manager'" in problems[0]
    assert any("context_scope[1]: unknown role 'Quality Manager'" in p for p in problems)
    doc = validate_flow(data, "flow.yaml", known_roles=("Marketing Manager", "Quality Manager"))
    assert doc.steps[0].speaker_role_ref == "Marketing Manager"
    assert doc.steps[0].context_scope == ["Marketing Manager", "Quality Manager"]


def test_a_scope_may_name_a_speaker_of_the_flow() -> None:
    doc = validate_flow(
        {
            "name": "t",
            "steps": [
                {"speaker": "Guest", "task": "comment", "context_scope": "Host"},
                {"speaker": "Host", "task": "comment", "context_scope": ["Guest"]},
            ],
        },
        known_roles={"Guest", "Host"},
    )
    assert [s.context_scope for s in doc.steps] == ["Host", ["Guest"]]


def test_a_role_named_like_a_keyword_may_be_listed() -> None:
    doc = validate_flow(
        {
            "name": "t",
            "roles": {"all": {"prompt": "a role with an unlucky name"}},
            "steps": [{"speaker": "all", "task": "comment", "context_scope": ["all"]}],
        }
    )
    assert doc.steps[0].context_scope == ["all"]


@pytest.mark.parametrize("keyword", CONTEXT_KEYWORDS)
def test_every_context_keyword_is_accepted(keyword: str) -> None:
    doc = validate_flow(
        {"name": "t", "steps": [{"speaker": "A", "task": "comment", "context_scope": keyword}]},
        known_roles=["A"],
    )
    assert doc.steps[0].context_scope == keyword


def example_paths() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def test_the_examples_are_there() -> None:
    names = {path.name for path in example_paths()}
    assert {"teaching_loop.yaml", "debate.yaml", "demo.yaml"} <= names


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.name)
def test_example_validates_and_explains_itself(path: Path) -> None:
    assert path.read_text(encoding="utf-8").startswith("# ")
    doc = load_flow_file(path)
    assert doc.steps and [s.order for s in doc.steps] == list(range(1, len(doc.steps) + 1))
    assert doc.type in FLOW_TYPES


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.name)
def test_example_round_trips_through_export(path: Path) -> None:
    doc = load_flow_file(path)
    exported = dump_flow_yaml(flow_to_dict(doc))
    again = validate_flow(parse_flow_text(exported, "exported.yaml"), "exported.yaml")
    assert again == doc
    # Exporting the re-read document gives the same text: export is stable.
    assert dump_flow_yaml(flow_to_dict(again)) == exported


def test_examples_show_what_they_promise() -> None:
    teaching = load_flow_file(EXAMPLES / "teaching_loop.yaml")
    loop_steps = [s for s in teaching.steps if s.logic_config and s.logic_config.next_step_order]
    assert [s.task_type for s in teaching.steps] == [
        "ask_question",
        "answer_question",
        "review_answer",
        "summarize",
    ]
    assert loop_steps and loop_steps[0].logic_config.max_loops == 2

    debate = load_flow_file(EXAMPLES / "debate.yaml")
    assert debate.type == "debate"
    assert debate.responder is not None and debate.responder.type == "template"
    exits = [s.logic_config.exit_condition for s in debate.steps if s.logic_config]
    assert any(e is not None and e.type == "expression" for e in exits)

    demo = load_flow_file(EXAMPLES / "demo.yaml")
    assert 3 <= len(demo.steps) <= 4
    assert demo.termination_config is not None and demo.termination_config.max_rounds == 2
    logic = [s.logic_config for s in demo.steps if s.logic_config]
    assert any(lc.max_loops == 1 and lc.next_step_order for lc in logic)
    assert any(lc.condition for lc in logic)
    assert demo.responder is not None and demo.responder.type == "template"


def test_the_complete_example_in_the_docs_validates() -> None:
    text = (EXAMPLES.parent / "docs" / "flow-format.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    doc = validate_flow(parse_flow_text(block, "flow-format.md"), "flow-format.md")
    assert [s.speaker_role_ref for s in doc.steps] == ["Teacher", "Student", "Teacher", "Teacher"]
    assert doc.steps[1].task_type == "answer_question"  # written with the `task` alias
    assert doc.termination_config is not None and doc.termination_config.end_condition


def test_flow_to_dict_is_canonical_and_quiet() -> None:
    doc = validate_flow(
        {
            "name": "Quiet",
            "roles": {"A": {"prompt": "a"}},
            "termination_config": {},
            "steps": [
                {"order": 2, "speaker": "A", "task": "comment", "logic_config": {}},
                {
                    "order": 1,
                    "speaker": "A",
                    "target": "A",
                    "task": "question",
                    "context_param": None,
                    "description": None,
                },
            ],
        }
    )
    assert flow_to_dict(doc) == {
        "name": "Quiet",
        "type": "other",
        "is_active": True,
        "roles": {"A": {"prompt": "a"}},
        "steps": [
            {
                "order": 1,
                "speaker_role_ref": "A",
                "target_role_ref": "A",
                "task_type": "question",
                "context_scope": "all",
            },
            {"order": 2, "speaker_role_ref": "A", "task_type": "comment", "context_scope": "all"},
        ],
    }


def test_aliases_give_the_same_document_as_canonical_names() -> None:
    canonical = validate_flow(
        parse_flow_text(
            flow("""
                steps:
                  - speaker_role_ref: Teacher
                    target_role_ref: Student
                    task_type: ask_question
                """)
        )
    )
    aliased = validate_flow(
        parse_flow_text(
            flow("""
                steps:
                  - speaker: Teacher
                    target: Student
                    task: ask_question
                """)
        )
    )
    assert aliased == canonical
    assert "speaker:" not in dump_flow_yaml(flow_to_dict(aliased))
    assert "speaker_role_ref: Teacher" in dump_flow_yaml(flow_to_dict(aliased))


def test_steps_built_directly_accept_aliases_and_refuse_both() -> None:
    step = StepSpec.model_validate({"order": 1, "speaker": "A", "task": "comment"})
    assert (step.speaker_role_ref, step.task_type) == ("A", "comment")
    with pytest.raises(ValueError, match="'task' is an alias of 'task_type'"):
        StepSpec.model_validate({"order": 1, "speaker": "A", "task": "x", "task_type": "comment"})


def test_order_defaults_to_position_and_steps_are_sorted() -> None:
    doc = validate_flow(
        {
            "name": "t",
            "roles": {"A": {"prompt": "a"}},
            "steps": [
                {"speaker": "A", "task": "ask_question", "order": 3},
                {"speaker": "A", "task": "answer_question"},  # position 2
                {"speaker": "A", "task": "comment", "order": 1},
            ],
        }
    )
    assert [(s.order, s.task_type) for s in doc.steps] == [
        (1, "comment"),
        (2, "answer_question"),
        (3, "ask_question"),
    ]
    implicit = validate_flow(
        {
            "name": "t",
            "roles": {"A": {"prompt": "a"}},
            "steps": [{"speaker": "A", "task": "comment"}] * 3,
        }
    )
    assert [s.order for s in implicit.steps] == [1, 2, 3]


def test_defaults_and_mrc_style_empties() -> None:
    doc = validate_flow(
        {
            "name": "t",
            "roles": None,
            "termination_config": {},
            "steps": [
                {"speaker": "A", "task": "comment", "logic_config": {}, "context_param": None}
            ],
        },
        known_roles=["A"],
    )
    step = doc.steps[0]
    assert (doc.type, doc.is_active, doc.roles, doc.termination_config) == ("other", True, {}, None)
    assert (step.context_scope, step.context_param, step.logic_config) == ("all", {}, None)


def test_a_loop_to_itself_and_nested_loops_are_fine() -> None:
    doc = validate_flow(
        {
            "name": "nested",
            "roles": {"A": {"prompt": "a"}},
            "steps": [
                {"speaker": "A", "task": "question"},
                {
                    "speaker": "A",
                    "task": "comment",
                    "logic_config": {"next_step_order": 2, "max_loops": 0},
                },
                {
                    "speaker": "A",
                    "task": "evaluate",
                    "logic_config": {
                        "next_step_order": 1,
                        "max_loops": 3,
                        "exit_condition": {"type": "llm_accept_flag"},
                    },
                },
            ],
        }
    )
    assert doc.steps[1].logic_config is not None and doc.steps[1].logic_config.max_loops == 0
    assert doc.steps[2].logic_config is not None
    assert doc.steps[2].logic_config.exit_condition is not None


def test_json_text_is_read_like_yaml_even_with_tabs() -> None:
    text = '{\n\t"name": "J",\n\t"steps": [\n\t\t{"speaker": "A", "task": "comment"}\n\t]\n}\n'
    doc = validate_flow(parse_flow_text(text, "f.json"), "f.json", known_roles=["A"])
    assert doc.name == "J" and doc.steps[0].speaker_role_ref == "A"


def test_json_with_a_duplicate_key_is_still_refused() -> None:
    text = '{\n\t"name": "J",\n\t"name": "K"\n}\n'
    with pytest.raises(FlowValidationError) as info:
        parse_flow_text(text, "f.json")
    assert info.value.problems == [
        "f.json:2:1: found character '\\t' that cannot start any token"
        " (while scanning for the next token)"
    ]


def test_control_characters_are_reported_with_position() -> None:
    with pytest.raises(FlowValidationError) as info:
        parse_flow_text("name: a\nsteps: \x07\n", "f.yaml")
    assert info.value.problems == [
        "f.yaml:2:8: unacceptable character #x0007: special characters are not allowed"
    ]


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


SMALL = "name: Small\nroles: {A: {prompt: a}}\nsteps:\n  - {speaker: A, task: comment}\n"


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json", ".txt"])
def test_load_flow_file_reads_every_suffix_alike(tmp_path: Path, suffix: str) -> None:
    doc = load_flow_file(write(tmp_path / f"small{suffix}", SMALL))
    assert doc.name == "Small"


def test_load_flow_file_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.yaml", b"\xef\xbb\xbf" + SMALL.encode())
    assert load_flow_file(path).name == "Small"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "absent.yaml", "{p}: no such file"),
        (lambda d: d, "{p}: is a directory, not a flow file"),
        (
            lambda d: write(d / "latin1.yaml", b"name: caf\xe9\n"),
            "{p}: not UTF-8 text (byte 0xe9 at offset 9)",
        ),
        (lambda d: write(d / "list.yaml", "- a\n"), "{p}: the flow must be a mapping, got list"),
        (
            lambda d: write(d / "bad.yaml", "name: [\n"),
            "{p}:2:1: expected the node content, but found '<stream end>'",
        ),
    ],
    ids=["missing", "directory", "not-utf8", "list", "bad-yaml"],
)
def test_load_flow_file_problems_name_the_path(tmp_path: Path, make, expected: str) -> None:
    path = make(tmp_path)
    with pytest.raises(FlowValidationError) as info:
        load_flow_file(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(expected.format(p=path))
    assert info.value.data["source"] == str(path)


def test_load_flow_file_passes_known_roles(tmp_path: Path) -> None:
    path = write(tmp_path / "db.yaml", "name: Db\nsteps:\n  - {speaker: Tom, task: comment}\n")
    with pytest.raises(FlowValidationError, match="unknown role 'Tom'"):
        load_flow_file(path)
    assert load_flow_file(path, known_roles={"Tom"}).steps[0].speaker_role_ref == "Tom"


def test_dump_keeps_key_order_unicode_and_multiline_text() -> None:
    doc = validate_flow(
        {
            "name": "讨论",
            "topic": "Ünïcode stays as it is",
            "roles": {"打工人（产品）": {"prompt": "line one\nline two\n"}},
            "steps": [
                {"speaker": "打工人（产品）", "task": "comment", "context_scope": "__TOPIC__"}
            ],
        }
    )
    text = dump_flow_yaml(flow_to_dict(doc))
    assert text.splitlines()[0] == "name: 讨论"
    assert "打工人（产品）:" in text and "\\u" not in text
    assert "prompt: |\n      line one\n      line two\n" in text
    keys = [line.split(":")[0] for line in text.splitlines() if line and line[0] != " "]
    assert keys == ["name", "topic", "type", "is_active", "roles", "steps"]
    assert "\n  - order: 1\n" in text  # list items indented under their key
    assert validate_flow(parse_flow_text(text)) == doc


def test_document_models_forbid_extra_keys_and_are_strict() -> None:
    with pytest.raises(ValueError, match="extra"):
        FlowDocument.model_validate(
            {"name": "x", "steps": [{"speaker": "A", "task": "comment"}], "bogus": 1}
        )
    with pytest.raises(ValueError):
        StepSpec.model_validate({"order": "1", "speaker": "A", "task": "comment"})

import io
import sys
import unittest

import support  # noqa: F401  (bindings and SDK on sys.path)

from componentize_py_types import Err
from wit_world.imports import agent_host_agent_types as wit

from agent_host import Agent, CapabilityDenied, Internal, InvalidInput, Output, Task, export, http, kv, llm, tools


class TaskAndOutput(unittest.TestCase):
    def test_input_that_is_not_json_is_invalid_input_with_the_parsers_position(self):
        with self.assertRaises(InvalidInput) as caught:
            Task("t", "{nope", []).input_json()
        self.assertTrue(str(caught.exception).startswith("task input: "), caught.exception)
        self.assertIn("line 1 column 2", str(caught.exception))

    def test_metadata_value_is_the_first_entry_with_the_key(self):
        task = Task("t", "{}", [("trace", "a"), ("trace", "b")])
        self.assertEqual(task.metadata_value("trace"), "a")
        self.assertIsNone(task.metadata_value("other"))

    def test_json_output_is_compact_with_sorted_keys_like_the_rust_sdk(self):
        out = Output.json({"b": 1, "a": {"d": "é", "c": [1, 2.5]}})
        self.assertEqual(out.data, '{"a":{"c":[1,2.5],"d":"é"},"b":1}')

    def test_json_output_refuses_what_json_cannot_carry(self):
        for value in ({"x": object()}, {"x": float("nan")}):
            with self.assertRaises(Internal) as caught:
                Output.json(value)
            self.assertIn("cannot serialise output", str(caught.exception))

    def test_text_output_is_a_json_string(self):
        self.assertEqual(Output.text('say "hi"\n').data, '"say \\"hi\\"\\n"')


class Echo(Agent):
    def run(self, task: Task) -> Output:
        return Output.raw(task.input)


def wit_task(input: str = "{}") -> wit.Task:
    return wit.Task("inv-1", input, [("k", "v")])


class Export(unittest.TestCase):
    def run_agent(self, agent) -> object:
        try:
            return export(agent)().run(wit_task())
        except Err as e:
            return e.value

    def test_an_agent_class_and_a_function_both_export_run(self):
        self.assertEqual(export(Echo)().run(wit_task('{"a":1}')), wit.Output('{"a":1}'))
        self.assertEqual(export(lambda task: Output.text(task.id))().run(wit_task()), wit.Output('"inv-1"'))

    def test_each_error_reaches_the_host_as_its_wit_case(self):
        cases = [
            (InvalidInput("bad"), wit.AgentError_InvalidInput),
            (kv.Denied("state"), wit.AgentError_CapabilityDenied),
            (llm.BudgetExceeded("tokens"), wit.AgentError_CapabilityDenied),
            (llm.InvalidRequest("schema"), wit.AgentError_Internal),
            (tools.InvalidArguments("id"), wit.AgentError_Internal),
            (http.Status(503, "busy"), wit.AgentError_Upstream),
            (http.Denied("http://x/"), wit.AgentError_CapabilityDenied),
            (kv.NotACounter("state", "k", 3), wit.AgentError_Internal),
        ]
        for error, case in cases:

            def fail(task, error=error):
                raise error

            got = self.run_agent(fail)
            self.assertIsInstance(got, case, error)
            self.assertEqual(got.value, str(error))

    def test_an_uncaught_exception_is_internal_naming_it(self):
        def buggy(task):
            return {}["missing"]

        stderr = io.StringIO()
        with support.patch(sys, "stderr", stderr):
            got = self.run_agent(buggy)
        self.assertIsInstance(got, wit.AgentError_Internal)
        self.assertEqual(got.value, "uncaught KeyError: 'missing'")
        # The traceback goes to stderr, which the host captures into its log.
        self.assertIn("in buggy", stderr.getvalue())

    def test_returning_something_other_than_an_output_is_internal(self):
        got = self.run_agent(lambda task: {"not": "an Output"})
        self.assertIsInstance(got, wit.AgentError_Internal)
        self.assertIn("run returned dict, not agent_host.Output", got.value)

    def test_a_denial_raised_by_a_capability_is_catchable_as_capability_denied(self):
        self.assertIsInstance(kv.Denied("state"), CapabilityDenied)
        self.assertIsInstance(tools.Denied("x"), tools.Error)


if __name__ == "__main__":
    unittest.main()

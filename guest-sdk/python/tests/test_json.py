import json
import unittest

import support  # noqa: F401  (bindings and SDK on sys.path)

from agent_host._json import dumps


class SerdeJsonText(unittest.TestCase):
    def test_floats_are_written_in_serde_jsons_notation(self):
        # Each pair was read from the Rust hello agent's output for the same input.
        cases = {
            1e15: "1000000000000000.0",
            1e16: "1e+16",
            1.5e16: "1.5e+16",
            1.2345678901234568e17: "1.2345678901234568e+17",
            1.7976931348623157e308: "1.7976931348623157e+308",
            100.0: "100.0",
            0.1: "0.1",
            0.0001: "0.0001",
            0.000123: "0.000123",
            1e-5: "0.00001",
            1.234e-5: "0.00001234",
            -1.5e-5: "-0.000015",
            1e-6: "1e-6",
            9.99e-7: "9.99e-7",
            -2.5e-8: "-2.5e-8",
            5e-324: "5e-324",
        }
        for value, text in cases.items():
            self.assertEqual(dumps(value), text, value)
            self.assertEqual(json.loads(text), value)

    def test_objects_are_compact_with_sorted_keys_and_text_unescaped(self):
        value = {"z": [1, True, None], "a": {"é": "line\n\u0001"}, 3: "int key"}
        self.assertEqual(dumps(value), '{"3":"int key","a":{"é":"line\\n\\u0001"},"z":[1,true,null]}')

    def test_what_json_cannot_carry_is_refused(self):
        for bad in (float("nan"), float("inf"), {(1, 2): 3}, {"x": object()}, b"bytes"):
            with self.assertRaises((TypeError, ValueError), msg=repr(bad)):
                dumps(bad)
        loop = []
        loop.append(loop)
        with self.assertRaises(TypeError):
            dumps(loop)

    def test_a_value_shared_by_two_branches_is_not_a_cycle(self):
        shared = {"k": 1}
        self.assertEqual(dumps([shared, shared]), '[{"k":1},{"k":1}]')


if __name__ == "__main__":
    unittest.main()

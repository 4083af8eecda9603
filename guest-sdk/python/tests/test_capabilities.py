import unittest

import support  # noqa: F401  (bindings and SDK on sys.path)
from support import patch

from componentize_py_types import Err
from wit_world.imports import environment, store
from wit_world.imports import llm as wit_llm
from wit_world.imports import log as wit_log
from wit_world.imports import tools as wit_tools
from wit_world.imports import wasi_http_types as wasi_http

from agent_host import CapabilityDenied, Internal, Upstream, env, http, kv, llm, log, tools
from agent_host.http import _transport, _url


class Env(unittest.TestCase):
    def test_only_declared_variables_exist_and_require_names_the_missing_one(self):
        with patch(environment, "get_environment", lambda: [("TICKETS_URL", "http://t/")]):
            self.assertEqual(env.var("TICKETS_URL"), "http://t/")
            self.assertIsNone(env.var("HOME"))
            with self.assertRaises(CapabilityDenied) as caught:
                env.require("PAGER_URL")
        self.assertIn("`PAGER_URL`", str(caught.exception))
        self.assertIn("spec.capabilities.env", str(caught.exception))


class Log(unittest.TestCase):
    def test_fields_come_from_a_mapping_then_keywords_as_text(self):
        sent = []
        with patch(wit_log, "log", lambda *args: sent.append(args)):
            log.record(log.Level.WARN, "retrying", {"trace-id": "x"}, attempt=2)
            log.info("done")
        self.assertEqual(
            sent,
            [(log.Level.WARN, "retrying", [("trace-id", "x"), ("attempt", "2")]), (log.Level.INFO, "done", [])],
        )


def parts(url):
    t = _url.parse(url)
    scheme = {wasi_http.Scheme_Http: "http", wasi_http.Scheme_Https: "https"}.get(type(t.scheme))
    return scheme or t.scheme.value, t.authority, t.path_with_query


class Url(unittest.TestCase):
    def test_splits_scheme_authority_and_path_with_query(self):
        self.assertEqual(
            parts("http://127.0.0.1:18090/api/v1/query?query=up#frag"),
            ("http", "127.0.0.1:18090", "/api/v1/query?query=up"),
        )

    def test_defaults_the_path_to_slash(self):
        self.assertEqual(parts("HTTPS://example.com")[2], "/")
        self.assertEqual(parts("https://example.com?x=1")[2], "/?x=1")
        self.assertEqual(parts("https://example.com#top")[2], "/")

    def test_rejects_urls_without_scheme_host_or_with_user_info(self):
        for bad in ["example.com/x", "http:///x", "http://user:pw@example.com/", "http://a b/", "://x"]:
            with self.assertRaises(http.InvalidUrl, msg=bad):
                _url.parse(bad)

    def test_keeps_unknown_schemes_for_the_host_to_refuse(self):
        self.assertEqual(parts("ftp://example.com/f")[0], "ftp")

    def test_percent_encodes_everything_but_unreserved(self):
        self.assertEqual(http.encode_component("a-b_c.d~e"), "a-b_c.d~e")
        self.assertEqual(http.encode_component("a b/é"), "a%20b%2F%C3%A9")


class Http(unittest.TestCase):
    def test_the_hosts_refusal_is_a_denial_naming_the_url(self):
        target = _url.parse("http://10.0.0.1/admin")
        for code in (wasi_http.ErrorCode_HttpRequestDenied(), wasi_http.ErrorCode_DestinationIpProhibited()):
            e = _transport._from_code(code, target)
            self.assertIsInstance(e, http.Denied)
            self.assertIsInstance(e, CapabilityDenied)
            self.assertIn("http://10.0.0.1/admin", str(e))

    def test_other_error_codes_are_upstream_transport_errors(self):
        e = _transport._from_code(wasi_http.ErrorCode_ConnectionRefused(), None)
        self.assertIsInstance(e, http.Transport)
        self.assertIsInstance(e, Upstream)
        self.assertEqual(str(e), "HTTP transport error: ConnectionRefused")

    def test_methods_map_case_insensitively_and_keep_unknown_ones(self):
        self.assertIsInstance(_transport.method("post"), wasi_http.Method_Post)
        self.assertEqual(_transport.method("PURGE"), wasi_http.Method_Other("PURGE"))

    def test_a_non_2xx_response_is_a_status_error_with_the_start_of_the_body(self):
        response = http.Response(503, [("retry-after", b"5")], b"x" * 5000)
        with self.assertRaises(http.Status) as caught:
            response.error_for_status()
        self.assertEqual(caught.exception.status, 503)
        self.assertEqual(len(caught.exception.body), http.MAX_ERROR_BODY_CHARS)
        self.assertEqual(response.header("Retry-After"), "5")

    def test_a_body_that_is_not_json_is_a_decode_error(self):
        with self.assertRaises(http.Decode):
            http.Response(200, [], b"<html>").json()


class FakeBucket:
    def __init__(self, values):
        self.values = values

    def get(self, key):
        return self.values.get(key)


class KeyValue(unittest.TestCase):
    def test_a_denied_bucket_is_a_capability_denial_naming_the_bucket(self):
        def refuse(name):
            raise Err(store.Error_AccessDenied())

        with patch(store, "open", refuse), self.assertRaises(kv.Denied) as caught:
            kv.Store.open("secrets")
        self.assertIsInstance(caught.exception, CapabilityDenied)
        self.assertIn("`secrets`", str(caught.exception))
        self.assertIn("spec.capabilities.keyValue", str(caught.exception))

    def test_host_refusals_keep_the_hosts_message_and_are_upstream(self):
        e = kv.host_error("state", store.Error_Other("quota: maxBytes is 10"))
        self.assertIsInstance(e, Upstream)
        self.assertIn("quota: maxBytes is 10", str(e))

    def test_counters_are_little_endian_u64_and_anything_else_is_not_a_counter(self):
        s = kv.Store(FakeBucket({"n": (258).to_bytes(8, "little"), "text": b"abc"}), "state")
        self.assertEqual(s.counter("n"), 258)
        self.assertEqual(s.counter("absent"), 0)
        with self.assertRaises(kv.NotACounter) as caught:
            s.counter("text")
        self.assertIsInstance(caught.exception, Internal)
        self.assertIn("holds 3 bytes", str(caught.exception))

    def test_an_increment_outside_u64_is_refused_before_reaching_the_host(self):
        s = kv.Store(FakeBucket({}), "state")
        for delta in (-1, 2**64):
            with self.assertRaises(ValueError):
                s.increment("n", delta)

    def test_stored_bytes_that_are_not_json_are_an_internal_error(self):
        s = kv.Store(FakeBucket({"k": b"\xff"}), "state")
        with self.assertRaises(kv.JsonError):
            s.get_json("k")

    def test_keys_follow_every_page_of_the_host(self):
        asked = []

        def list_keys(cursor):
            asked.append(cursor)
            pages = {None: (["a", "b"], 2), 2: (["c"], 3)}
            keys, next_cursor = pages.get(cursor, (["d"], None))
            return store.KeyResponse(keys, next_cursor)

        self.assertEqual(kv.all_pages("state", list_keys), ["a", "b", "c", "d"])
        self.assertEqual(asked, [None, 2, 3])

    def test_a_cursor_that_does_not_advance_is_an_error_not_an_endless_loop(self):
        calls = []

        def list_keys(cursor):
            calls.append(cursor)
            # Bounded so that a missing guard fails the test instead of hanging it.
            if len(calls) > 10:
                raise AssertionError("asked forever")
            return store.KeyResponse(["a"], 1)

        with self.assertRaises(kv.HostError) as caught:
            kv.all_pages("state", list_keys)
        self.assertEqual(len(calls), 2)
        self.assertIn("does not advance", str(caught.exception))


class Llm(unittest.TestCase):
    def test_a_budget_refusal_stays_distinct_from_an_upstream_failure(self):
        budget = llm.from_wit_error(wit_llm.Error_BudgetExceeded("maxTokensPerInvocation"))
        self.assertIsInstance(budget, llm.BudgetExceeded)
        self.assertIsInstance(budget, CapabilityDenied)
        self.assertIn("maxTokensPerInvocation", str(budget))
        self.assertIsInstance(llm.from_wit_error(wit_llm.Error_Upstream("503")), Upstream)
        self.assertIsInstance(llm.from_wit_error(wit_llm.Error_InvalidRequest("schema")), Internal)

    def test_tool_arguments_that_are_not_json_name_the_tool(self):
        with self.assertRaises(llm.ToolArguments) as caught:
            llm.ToolCall("c1", "page_oncall", "{reason").arguments_json()
        self.assertEqual(caught.exception.tool, "page_oncall")
        self.assertIsInstance(caught.exception, Upstream)

    def test_complete_sends_the_request_and_returns_the_answer_with_its_tool_calls(self):
        sent = []

        def complete(request):
            sent.append(request)
            call = wit_llm.ToolCall("c1", "page_oncall", '{"reason":"down"}')
            message = wit_llm.Message(wit_llm.Role.ASSISTANT, "", [call], None)
            return wit_llm.Response(message, wit_llm.FinishReason.TOOL_CALLS, wit_llm.Usage(10, 2))

        tool = llm.Tool.new("page_oncall", "Pages", {"type": "object", "properties": {}})
        with patch(wit_llm, "complete", complete):
            answer = llm.complete([llm.Message.user("db down")], [tool], llm.Options(max_tokens=256))
        request = sent[0]
        self.assertEqual(request.messages, [wit_llm.Message(wit_llm.Role.USER, "db down", [], None)])
        self.assertEqual(request.tools, [wit_llm.Tool("page_oncall", "Pages", '{"properties":{},"type":"object"}')])
        self.assertEqual(request.options, wit_llm.Options(256, None, None, []))
        self.assertEqual(answer.tool_calls[0].arguments_json(), {"reason": "down"})
        self.assertEqual(answer.finish_reason, llm.FinishReason.TOOL_CALLS)
        self.assertEqual(answer.usage, llm.Usage(10, 2))

    def test_a_refused_completion_raises_the_mapped_error(self):
        def refuse(request):
            raise Err(wit_llm.Error_Denied("spec.capabilities.llm is not granted"))

        with patch(wit_llm, "complete", refuse), self.assertRaises(llm.Denied):
            llm.complete([llm.Message.user("hi")])


def tool(server, name):
    return tools.Tool(server, name, "", "{}")


class Tools(unittest.TestCase):
    def test_model_names_are_what_model_apis_accept(self):
        self.assertEqual(tool("tickets", "search").model_name(), "tickets__search")
        self.assertEqual(tool("docs", "fs.read/v2").model_name(), "docs__fs_read_v2")
        self.assertEqual(tool("d", "é-x").model_name(), "d___-x")
        self.assertEqual(len(tool("s", "x" * 100).model_name()), 64)

    def test_model_tools_offer_each_granted_tool_under_its_model_name(self):
        granted = [tools.Tool("status", "check", "Checks", '{"type":"object"}')]
        self.assertEqual(tools.model_tools(granted), [llm.Tool("status__check", "Checks", '{"type":"object"}')])

    def test_the_tools_own_errors_go_back_to_the_model_as_text(self):
        granted = [tool("tickets", "get")]
        for error, text in (
            (wit_tools.Error_ToolError("no such ticket"), "error: the tool failed: no such ticket"),
            (wit_tools.Error_InvalidArguments("id"), "error: invalid tool arguments: id"),
        ):

            def fail(server, name, arguments, error=error):
                raise Err(error)

            with patch(wit_tools, "call_tool", fail):
                message = tools.answer(granted, llm.ToolCall("c7", "tickets__get", "{}"))
            self.assertEqual(message, llm.Message(llm.Role.TOOL, text, [], "c7"))

    def test_policy_refusals_and_unknown_tools_are_raised_not_given_to_the_model(self):
        granted = [tool("tickets", "get")]

        def over_budget(server, name, arguments):
            raise Err(wit_tools.Error_BudgetExceeded("maxCalls"))

        with patch(wit_tools, "call_tool", over_budget), self.assertRaises(tools.BudgetExceeded):
            tools.run_model_call(granted, llm.ToolCall("c1", "tickets__get", "{}"))
        with self.assertRaises(tools.Denied) as caught:
            tools.run_model_call(granted, llm.ToolCall("c1", "shell__exec", "{}"))
        self.assertIn("`shell__exec`", str(caught.exception))

    def test_a_structured_result_is_preferred_to_the_text(self):
        calls = []

        def call_tool(server, name, arguments):
            calls.append((server, name, arguments))
            return wit_tools.ToolResult("up", "[]", '{"up":true}' if name == "status" else None)

        with patch(wit_tools, "call_tool", call_tool):
            self.assertEqual(tools.run_model_call([tool("s", "status")], llm.ToolCall("c", "s__status", "{}")), '{"up":true}')
            self.assertEqual(tools.call("s", "ping", {"b": 1, "a": 2}).text, "up")
        self.assertEqual(calls[-1], ("s", "ping", '{"a":2,"b":1}'))


if __name__ == "__main__":
    unittest.main()

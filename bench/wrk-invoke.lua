-- wrk request for the serve benchmark: one synchronous invocation of hello.
wrk.method = "POST"
wrk.body = '{"name":"bench"}'
wrk.headers["Content-Type"] = "application/json"

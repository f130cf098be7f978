"""Local servers that speak the OpenAI and Anthropic APIs, for tests and offline demos.

    with FakeOpenAI([Call("search", {"q": "x"}), Answer({"ok": True})]) as fake:
        provider = OpenAIProvider(fake.url, api_key="sk-test")
        ...
        assert fake.requests[0].body["response_format"]["type"] == "json_schema"

Each server listens on 127.0.0.1 on a free port from the moment it is constructed (connections
queue until its thread serves them, so there is nothing to wait for), answers with realistic
payloads (ids, `choices`/`content` blocks, finish and stop reasons, JSON-string tool arguments,
usage), checks the parts of the protocol a real server would reject (auth headers, required
fields, tool results answering tool calls), and records every request it receives.

Replies are scripted: a list for any model, a `{model: [...]}` mapping (`"*"` for the rest), or
a handler `(Recorded) -> item`. An item is an `Answer` (the structured answer: OpenAI content,
or Anthropic's `answer` tool), `Text`, a tool `Call` (a list of them for parallel calls),
`Status` (an API error, e.g. 429 with Retry-After, or 500), or `Raw` (an exact payload).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Final, Self

__all__ = [
    "Answer",
    "Call",
    "FakeAnthropic",
    "FakeOpenAI",
    "Raw",
    "Recorded",
    "Status",
    "Text",
]


@dataclass(frozen=True, slots=True)
class Recorded:
    """A request as the fake received it. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was not JSON


@dataclass(frozen=True, slots=True)
class Answer:
    """The model's final, structured answer."""

    value: Any


@dataclass(frozen=True, slots=True)
class Text:
    """A plain text reply (not JSON unless the text is)."""

    text: str


@dataclass(frozen=True, slots=True)
class Call:
    """A call of one tool; its id is made up when None."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """An API error response, in the protocol's own error shape."""

    status: int
    message: str = "fake error"
    retry_after: float | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Raw:
    """An exact response body."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


Item = Answer | Text | Call | list[Call] | Status | Raw
Handler = Callable[[Recorded], Item]
Script = Sequence[Item] | Mapping[str, Sequence[Item]]
Response = tuple[int, dict[str, str], Any]

ANY_MODEL: Final = "*"


def _tokens(value: Any) -> int:
    """A made-up but stable token count: about four characters a token."""
    return len(json.dumps(value, ensure_ascii=False)) // 4 + 1


class _FakeServer:
    """A scripted HTTP server on 127.0.0.1, serving from a thread while in a `with` block."""

    PATH: ClassVar[str]

    def __init__(
        self,
        script: Script | None = None,
        *,
        handler: Handler | None = None,
        api_key: str | None = None,
    ) -> None:
        if (script is None) == (handler is None):
            raise ValueError("give a script or a handler, not both or neither")
        if isinstance(script, Mapping):
            self._script = {model: list(items) for model, items in script.items()}
        else:
            self._script = {ANY_MODEL: list(script or [])}
        self._handler = handler
        self.api_key = api_key  # when set, other keys are refused
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def __enter__(self) -> Self:
        # A short poll interval only bounds how long leaving the `with` block takes.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.02,),
            name=f"{type(self).__name__}:{self.port}",
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    # --- serving --------------------------------------------------------------------

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, payload = fake._respond(Recorded("POST", self.path, headers, body))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")  # no idle connection outlives the fake
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read `requests`, not stderr

        return _Handler

    def _respond(self, request: Recorded) -> Response:
        with self._lock:
            self._requests.append(request)
        try:
            refused = self._refuse(request)
            if refused is not None:
                return self._render_status(refused)
            item = self._next(request)
            if isinstance(item, Status):
                return self._render_status(item)
            if isinstance(item, Raw):
                return item.status, dict(item.headers), item.body
            return 200, {}, self._render(item, request.body)
        except Exception as e:  # a malformed request or broken handler: an error, not a hang
            return self._render_status(Status(500, f"fake server failed: {e!r}"))

    def _next(self, request: Recorded) -> Item:
        if self._handler is not None:
            return self._handler(request)
        model = str(request.body.get("model"))
        with self._lock:
            queue = self._script.get(model) or self._script.get(ANY_MODEL)
            if not queue:
                return Status(400, f"fake: no scripted response left for model {model!r}")
            return queue.pop(0)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _render_status(self, status: Status) -> Response:
        headers = dict(status.headers)
        if status.retry_after is not None:
            headers["Retry-After"] = str(status.retry_after)
        return status.status, headers, self._error_body(status)

    def _refuse(self, request: Recorded) -> Status | None:
        if request.path != self.PATH:
            return Status(404, f"no route for {request.path}")
        if not isinstance(request.body, dict):
            return Status(400, "the request body is not a JSON object")
        return self._check(request)

    # --- the protocol, per subclass ---------------------------------------------------

    def _check(self, request: Recorded) -> Status | None:
        raise NotImplementedError

    def _render(self, item: Answer | Text | Call | list[Call], request: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _error_body(self, status: Status) -> Any:
        raise NotImplementedError


_OPENAI_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}


class FakeOpenAI(_FakeServer):
    """OpenAI Chat Completions at `{url}/chat/completions`; `url` is the base URL."""

    PATH = "/v1/chat/completions"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _check(self, request: Recorded) -> Status | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:]:
            return Status(401, "You didn't provide an API key.")
        if self.api_key is not None and auth[7:] != self.api_key:
            # The real API echoes (a masked) key; echoing it whole tests that clients scrub it.
            return Status(401, f"Incorrect API key provided: {auth[7:]}.")
        body = request.body
        if not isinstance(body.get("model"), str):
            return Status(400, "you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return Status(400, "'messages' must be a non-empty array")
        if "tools" in body and not body["tools"]:
            return Status(400, "[] is too short - 'tools'")
        called: set[str] = set()
        for message in messages:
            for call in message.get("tool_calls") or ():
                called.add(call["id"])
            if message.get("role") == "tool" and message.get("tool_call_id") not in called:
                return Status(
                    400,
                    "messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'.",
                )
        return None

    def _render(self, item: Answer | Text | Call | list[Call], request: dict[str, Any]) -> Any:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if isinstance(item, Answer):
            message["content"] = json.dumps(item.value)
            finish = "stop"
        elif isinstance(item, Text):
            message["content"] = item.text
            finish = "stop"
        else:
            calls = item if isinstance(item, list) else [item]
            message["tool_calls"] = [
                {
                    "id": call.id or self._next_id("call_"),
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in calls
            ]
            finish = "tool_calls"
        prompt_tokens = _tokens(request.get("messages"))
        completion_tokens = _tokens(message.get("content") or message.get("tool_calls"))
        return {
            "id": self._next_id("chatcmpl-fake"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _error_body(self, status: Status) -> Any:
        kind = _OPENAI_ERROR_TYPES.get(status.status, "server_error")
        return {"error": {"message": status.message, "type": kind, "param": None, "code": None}}


_ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class FakeAnthropic(_FakeServer):
    """Anthropic Messages at `{url}/v1/messages`; `url` is the base URL. An `Answer` becomes
    a call of the tool named `answer_tool`."""

    PATH = "/v1/messages"

    def __init__(
        self,
        script: Script | None = None,
        *,
        handler: Handler | None = None,
        api_key: str | None = None,
        answer_tool: str = "answer",
    ) -> None:
        super().__init__(script, handler=handler, api_key=api_key)
        self.answer_tool = answer_tool

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _check(self, request: Recorded) -> Status | None:
        key = request.headers.get("x-api-key")
        if not key:
            return Status(401, "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return Status(401, f"invalid x-api-key: {key}")
        if "anthropic-version" not in request.headers:
            return Status(400, "anthropic-version: header is required")
        body = request.body
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                return Status(400, f"{name}: Field required")
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return Status(400, "messages: at least one message is required")
        return self._check_tool_results(messages)

    @staticmethod
    def _check_tool_results(messages: list[Any]) -> Status | None:
        """Each tool_use must be answered, by id, in the very next (user) message."""
        for i, message in enumerate(messages):
            if message.get("role") not in ("user", "assistant"):
                return Status(400, f"messages.{i}.role: must be 'user' or 'assistant'")
            content = message.get("content")
            if message["role"] != "assistant" or not isinstance(content, list):
                continue
            uses = {b["id"] for b in content if b.get("type") == "tool_use"}
            if not uses or i + 1 == len(messages):
                continue
            answer = messages[i + 1].get("content")
            results = {
                b.get("tool_use_id")
                for b in (answer if isinstance(answer, list) else ())
                if b.get("type") == "tool_result"
            }
            if not uses <= results:
                return Status(
                    400,
                    f"messages.{i + 1}: tool_use ids were found without tool_result blocks "
                    f"immediately after: {', '.join(sorted(uses - results))}",
                )
        return None

    def _render(self, item: Answer | Text | Call | list[Call], request: dict[str, Any]) -> Any:
        content: list[dict[str, Any]]
        if isinstance(item, Text):
            content = [{"type": "text", "text": item.text}]
            stop = "end_turn"
        else:
            calls = (
                [Call(self.answer_tool, item.value)]
                if isinstance(item, Answer)
                else item
                if isinstance(item, list)
                else [item]
            )
            content = [
                {
                    "type": "tool_use",
                    "id": call.id or self._next_id("toolu_fake"),
                    "name": call.name,
                    "input": call.arguments,
                }
                for call in calls
            ]
            stop = "tool_use"
        return {
            "id": self._next_id("msg_fake"),
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": _tokens([request.get("system"), request.get("messages")]),
                "output_tokens": _tokens(content),
            },
        }

    def _error_body(self, status: Status) -> Any:
        kind = _ANTHROPIC_ERROR_TYPES.get(status.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": status.message}}

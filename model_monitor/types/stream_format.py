"""Stream formats: how the events of a streamed reply fold into the body a plain request would have got. Each
model type names its format (a StreamReply subclass); OpenAI chat and completion chunks are ChunkReply, the default.

Timings follow vLLM's benchmark (benchmarks/backend_request_func.py) and llmperf, measured from the moment the
request is sent (the judge adds ttfb_s, the time to the response headers, for every type):
  ttft_s          time to the first token of any kind (reasoning included): the model is alive
  ttfc_s          time to the first visible output token (content, or a tool-call delta): what a user waits for
  itl_*_s         inter-token latency: gaps between successive token-bearing chunks (mean and max)
  output_tokens   usage.completion_tokens when the server reports it (stream_options.include_usage), else the
                  number of token-bearing chunks (servers send about one token per chunk)
  tokens_per_s    (output_tokens - 1) / (last token - first token): the decode rate after the first token, the
                  inverse of vLLM's TPOT, only from two tokens or more that arrived over a millisecond or more.
                  It leaves the prefill out, so it does not shrink when TTFT grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from ..errors import ErrorClass, ProbeError
from ..reply import MAX_SERVER_MESSAGE, Said, carries_error, load_json, one_line, server_said
from .usage import count

__all__ = ["ChunkReply", "StreamReply"]

MIN_DECODE_WINDOW_S = 0.001  # tokens closer together than this arrived in one burst: no rate can be read from them
DONE = b"data: [DONE]"


@dataclass
class StreamReply:
    """What every stream format shares: the moments (seconds since send) its tokens arrived, and their metrics.

    A stream format is a subclass that folds one event at a time into the reply (take), says what a complete
    stream must have carried (finish) and assembles the JSON body a plain request would have got (body), so that
    a type's one check judges streamed and plain replies by the same rules. A model type names its format."""

    usage_tokens: int | None = None
    token_times: list[float] = field(default_factory=list)
    first_content: float | None = None
    events: int = 0
    done: bool = False  # the stream's end marker arrived: nothing after it is read

    @staticmethod
    def ends(chunk: bytes) -> bool:
        """Whether this network chunk closes the stream, so that reading stops there instead of waiting for the
        server (or a proxy in front of it) to close the connection."""
        return chunk.rstrip().endswith(DONE)

    def take(self, name: str, data: str, now: float) -> None:
        """Fold one SSE event (its name and data, arrived `now`) into the reply."""
        raise NotImplementedError

    def finish(self, after: str) -> None:
        """Refuse a stream that ended incomplete; `after` says how far it got (`after 3 events and 0.2 s`)."""
        raise NotImplementedError

    def body(self) -> dict[str, Any]:
        """The reply as the JSON body a plain request would have got."""
        raise NotImplementedError

    def token(self, now: float, visible: bool) -> None:
        """A token-bearing event arrived: reasoning counts for TTFT, only visible output for TTFC."""
        self.token_times.append(now)
        if visible and self.first_content is None:
            self.first_content = now

    def count_usage(self, tokens: Any) -> None:
        """The server's own count of output tokens, when it is a plausible one."""
        if count(tokens) is not None:
            self.usage_tokens = tokens

    def parse(self, name: str, data: str, now: float) -> dict[str, Any] | None:
        """An event's data as a JSON object (None for an empty one); an error event, an error object or a
        malformed event breaks the stream, in the server's own words where it has some."""
        if not data.strip():
            return None
        try:
            chunk = load_json(data, f"event {self.events}")
        except ProbeError as error:
            if name == "error":  # the server's own words, even when they are not JSON
                raise self.error_event(Said(one_line(data, MAX_SERVER_MESSAGE))) from None
            raise ProbeError(ErrorClass.STREAM_BROKEN, f"malformed chunk after {now:.3f} s: {error.message}") from None
        if name == "error" or carries_error(chunk):
            # Also next to choices: OpenRouter reports a provider failing mid-stream inside an HTTP 200 this way.
            raise self.error_event(server_said(chunk))
        if not isinstance(chunk, dict):
            raise ProbeError(ErrorClass.STREAM_BROKEN, f"malformed chunk (event {self.events}, not an object)")
        return chunk

    def error_event(self, said: Said) -> ProbeError:
        """The server reported an error inside the stream, in its own words (a spent budget is quota)."""
        return ProbeError(
            ErrorClass.QUOTA if said.quota else ErrorClass.STREAM_BROKEN,
            f"error event in the stream after {self.events - 1} events: {said.words or 'no message'}",
        )

    def metrics(self) -> dict[str, float]:
        if not self.token_times:
            return {}
        ttft = self.token_times[0]
        gaps = [b - a for a, b in pairwise(self.token_times)]
        tokens = self.usage_tokens or len(self.token_times)
        out = {"ttft_s": ttft, "output_tokens": float(tokens)}
        if self.first_content is not None:
            out["ttfc_s"] = self.first_content
        if gaps:
            out["itl_mean_s"] = sum(gaps) / len(gaps)
            out["itl_max_s"] = max(gaps)
        if self.rate_unmeasurable() is None:
            out["tokens_per_s"] = (tokens - 1) / (self.token_times[-1] - ttft)
        return out

    def rate_unmeasurable(self) -> str | None:
        """Why no decode rate can be read from this stream (`1 token`), or None when one can: it needs two tokens
        or more, in chunks that arrived over a millisecond or more. A stream a proxy buffered into one burst would
        show a rate of 40,000/s."""
        times = self.token_times
        tokens = self.usage_tokens or len(times)
        if tokens < 2:
            return f"{tokens} token{'' if tokens == 1 else 's'}"
        if len(times) < 2:
            return f"{tokens} tokens in 1 chunk"
        if times[-1] - times[0] < MIN_DECODE_WINDOW_S:
            return f"{len(times)} token chunks within {(times[-1] - times[0]) * 1000:.2f} ms (buffered on the way)"
        return None


@dataclass
class ChunkReply(StreamReply):
    """OpenAI chat and completion chunks (`choices[].delta` or `choices[].text`), ended by `data: [DONE]`."""

    content: str = ""
    reasoning: str = ""
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None  # the last chunk's, with stream_options.include_usage
    model: str | None = None  # the model that answered, as the first chunk names it

    def body(self) -> dict[str, Any]:
        """A chat message and a completion's text in one choice, and the stream's usage."""
        calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        message = {"content": self.content, "reasoning_content": self.reasoning, "tool_calls": calls}
        choice = {"index": 0, "message": message, "text": self.content, "finish_reason": self.finish_reason}
        return {"choices": [choice], "usage": self.usage, "model": self.model}

    def finish(self, after: str) -> None:
        if not self.done:
            raise ProbeError(ErrorClass.STREAM_BROKEN, f"stream ended without [DONE] {after}")
        if self.finish_reason is None:
            raise ProbeError(ErrorClass.STREAM_BROKEN, f"stream carried no finish_reason {after}")
        if not self.token_times:
            raise ProbeError(ErrorClass.EMPTY, f"stream carried no content {after}")

    def take(self, name: str, data: str, now: float) -> None:
        if data.strip() == "[DONE]":
            self.done = True
            return
        chunk = self.parse(name, data, now)
        if chunk is None:
            return
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            self.count_usage(usage.get("completion_tokens"))
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                self._take_choice(choice, now)

    def _take_choice(self, choice: dict[str, Any], now: float) -> None:
        raw_delta = choice.get("delta")
        delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
        content = delta.get("content") if delta else choice.get("text")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        calls = delta.get("tool_calls") or []
        if isinstance(content, str) and content:
            self.content += content
        if isinstance(reasoning, str) and reasoning:
            self.reasoning += reasoning
        for call in calls if isinstance(calls, list) else []:
            self._merge_tool_call(call)
        visible = bool(isinstance(content, str) and content) or bool(calls)
        if visible or (isinstance(reasoning, str) and reasoning):
            self.token(now, visible)
        if choice.get("finish_reason") == "error":
            raise ProbeError(ErrorClass.STREAM_BROKEN, f"stream finished with finish_reason=error after {now:.3f} s")
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _merge_tool_call(self, call: Any) -> None:
        """Tool calls arrive as deltas: the name once, the arguments in pieces, keyed by index."""
        if not isinstance(call, dict):
            return
        index = call.get("index", 0)
        if not isinstance(index, int) or isinstance(index, bool):
            raise ProbeError(
                ErrorClass.SCHEMA, f"a streamed tool call's index is {type(index).__name__}, expected an integer"
            )
        slot = self.tool_calls.setdefault(index, {"type": "function", "function": {"name": "", "arguments": ""}})
        raw_function = call.get("function")
        function: dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
        if isinstance(function.get("name"), str):
            slot["function"]["name"] += function["name"]
        if isinstance(function.get("arguments"), str):
            slot["function"]["arguments"] += function["arguments"]

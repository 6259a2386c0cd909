"""The fault tables: each way a reply can be wrong, chosen by the testbed model name that injects it, with the
class and a piece of the reason the monitor must give. The end-to-end tests run them through pytest; test_probe.py
runs them through the probe core in-process."""

from __future__ import annotations

# fault model name, timeout, expected class, a piece of the reason
CHAT_FAULTS = [
    ("f+hang", 1, "timeout", "no complete reply within 1 s (waiting for response headers)"),
    ("f+trickle", 1.5, "timeout", "within 1.5 s (reading the body)"),
    ("f+reset", 5, "connect", "connection lost waiting for response headers"),
    ("f+close", 5, "connect", "connection lost waiting for response headers: Server disconnected"),
    ("f+huge", 5, "bad_response", "reply of 52428800 bytes exceeds the 8 MiB cap"),
    ("f+html", 5, "bad_response", "HTTP 200 with content-type text/html, expected JSON: HTML page 'Sign in'"),
    ("f+error200", 5, "bad_response", "error object in HTTP 200: model is loading"),
    ("f+badjson", 5, "bad_response", "not valid JSON"),
    ("f+texttype", 5, "bad_response", "content-type text/plain, expected JSON"),
    ("f+badgzip", 5, "bad_response", "could not be decoded"),
    ("f+empty", 5, "empty", "content is empty"),
    ("f+nochoices", 5, "empty", "no choices"),
    ("f+status=401", 5, "auth", "HTTP 401 from POST /v1/chat/completions"),
    ("f+status=403", 5, "auth", "HTTP 403"),
    ("f+status=404", 5, "client_error", "HTTP 404"),
    ("f+status=429", 5, "rate_limited", "HTTP 429"),
    ("f+status=500", 5, "server_error", "HTTP 500 from POST /v1/chat/completions"),
    ("f+status=503", 5, "server_error", "injected 503"),
    ("f+redirect", 5, "bad_response", "HTTP 302 redirect from POST /v1/chat/completions to http://127.0.0.1:"),
]


STREAM_CUT = ("f+cut+tokens=6", 5, "stream_broken", "connection lost reading the stream")


STREAM_FAULTS = [
    ("st+cut", "stream_broken", "connection lost reading the stream"),
    ("st+nodone", "stream_broken", "stream ended without [DONE]"),
    ("st+nofinish", "stream_broken", "stream carried no finish_reason"),
    ("st+malformed", "stream_broken", "malformed chunk"),
    ("st+errorevent", "stream_broken", "error event in the stream after 3 events: upstream overloaded"),
    ("st+nocontent", "empty", "stream carried no content"),
    ("st+html", "bad_response", "asked for a stream, got content-type text/html"),
]


IMAGE_FAULTS = [
    # model name (its "+" tokens choose the fault), class, piece of the reason
    ("img+badb64", "schema", "data[0].b64_json is not base64"),
    (
        "img+notimage",
        "schema",
        "decodes to 25 bytes that are not a PNG, JPEG or WebP image (they start 3c68746d6c3e6e6f)",
    ),
    ("img+empty", "empty", "reply has no images"),
    ("img+truncated", "schema", "a truncated PNG: chunk IDAT at byte 33 needs"),
    ("img+format=jpeg+truncated", "schema", "a truncated JPEG"),
    ("img+format=webp+truncated", "schema", "a truncated WebP: RIFF says 41 bytes, got 20"),
    ("img+url=ftp://images.example/1.png", "schema", "data[0].url is not an http(s) URL with a host (scheme 'ftp')"),
    ("img+error200", "bad_response", "error object in HTTP 200: model is loading"),
    ("img+claims=100000x100000", "schema", "PNG of 100000x100000 pixels, asked for 256x256"),
]


RERANK_FAULTS = [
    # model name (its "+" tokens choose the fault), class, piece of the reason
    ("rr+wrongcount", "schema", "got 2 distinct scores for 3 documents"),
    ("rr+boolindex", "schema", "results[0].index False is not a document index"),
    ("rr+empty", "empty", "reply has no results"),
]


MODERATION_FAULTS = [
    # model name (its "+" tokens choose the fault), class, piece of the reason
    ("mod+wrongcount", "schema", "got 2 moderation results for 1 inputs"),
    ("mod+noflagged", "schema", "results[0] has no boolean 'flagged' (None)"),
    ("mod+nan", "schema", "results[0].category_scores.violence is not a finite number (nan)"),
    ("mod+empty", "empty", "reply has no results"),
    ("mod+error200", "bad_response", "error object in HTTP 200: model is loading"),
    ("mod+status=503", "server_error", "HTTP 503 from POST /v1/moderations"),
]


RESPONSES_FAULTS = [
    # plain
    ("r+empty", {}, "empty", "response carries no output_text after 0 output tokens"),
    ("r+badshape", {}, "schema", "'output' is str, expected a list"),
    ("r+filtered", {}, "bad_response", "response incomplete: content_filter after 2 output tokens"),
    (
        "r+incomplete+empty",
        {},
        "bad_response",
        "response incomplete: max_output_tokens after 0 output tokens (max_output_tokens is 256)",
    ),
    ("r+failed", {}, "bad_response", "error object in HTTP 200: The model crashed while generating"),
    ("r+status=503", {}, "server_error", "HTTP 503 from POST /v1/responses"),
    ("r+html", {}, "bad_response", "expected JSON: HTML page 'Sign in'"),
    ("r+body=deep", {}, "bad_response", "reply is JSON nested too deep to read"),
    ("r+error200", {}, "bad_response", "error object in HTTP 200: model is loading"),
    # streamed
    ("rs+cut", {"stream": True}, "stream_broken", "connection lost reading the stream"),
    ("rs+nofinish", {"stream": True}, "stream_broken", "stream ended without response.completed after 5 events"),
    ("rs+malformed", {"stream": True}, "stream_broken", "malformed chunk after"),
    (
        "rs+errorevent",
        {"stream": True},
        "stream_broken",
        "error event in the stream after 3 events: upstream overloaded",
    ),
    ("rs+nocontent", {"stream": True}, "empty", "stream carried no output_text delta after 2 events"),
    ("rs+empty", {"stream": True}, "empty", "response carries no output_text after 0 output tokens"),
    ("rs+filtered", {"stream": True}, "bad_response", "response incomplete: content_filter after 4 output tokens"),
    ("rs+failed", {"stream": True}, "bad_response", "response status failed after 4 output tokens: The model crashed"),
    (
        "rs+failedevent",
        {"stream": True},
        "bad_response",
        "response.failed event carries a response whose status is 'completed'",
    ),
    ("rs+html", {"stream": True}, "bad_response", "asked for a stream, got content-type text/html"),
    ("rs+tokens=3", {"stream": True, "expect": {"contains": "pang"}}, "expectation", "reply does not contain 'pang'"),
    ("rs+token_delay=0.01", {"stream": True, "min_tokens_per_s": 1000}, "slo", "< min_tokens_per_s 1000"),
]


MESSAGES_FAULTS = [
    # plain
    ("m+empty", {}, "empty", "reply has no text (blocks: text; stop_reason=end_turn, 2 output tokens)"),
    (
        "m+reasoning",
        {"require_content": True},
        "empty",
        "reasoning but no visible content, and require_content is set (stop_reason=max_tokens, 4 output tokens)",
    ),
    ("m+nocontent", {}, "empty", "reply has no content blocks"),
    ("m+badshape", {}, "schema", "'content' is str, expected a list"),
    ("m+apierror", {}, "bad_response", "error object in HTTP 200: Internal server error"),
    ("m+apierror=529", {}, "server_error", "HTTP 529 from POST /v1/messages"),
    ("m+status=503", {}, "server_error", "HTTP 503 from POST /v1/messages"),
    ("m+html", {}, "bad_response", "expected JSON: HTML page 'Sign in'"),
    ("m+error200", {}, "bad_response", "error object in HTTP 200: model is loading"),
    # streamed
    ("ms+cut", {"stream": True}, "stream_broken", "connection lost reading the stream"),
    ("ms+nostop", {"stream": True}, "stream_broken", "stream ended without message_stop after 9 events"),
    ("ms+malformed", {"stream": True}, "stream_broken", "malformed chunk after"),
    ("ms+errorevent", {"stream": True}, "stream_broken", "error event in the stream after 5 events: Overloaded"),
    (
        "ms+nocontent",
        {"stream": True},
        "empty",
        "reply has no text (blocks: text; stop_reason=end_turn, 0 output tokens)",
    ),
    ("ms+apierror=529", {"stream": True}, "server_error", "HTTP 529 from POST /v1/messages"),
    ("ms+html", {"stream": True}, "bad_response", "asked for a stream, got content-type text/html"),
    ("ms+tokens=3", {"stream": True, "expect": {"contains": "pang"}}, "expectation", "reply does not contain 'pang'"),
    ("ms+token_delay=0.01", {"stream": True, "min_tokens_per_s": 1000}, "slo", "< min_tokens_per_s 1000"),
]


SPEECH_FAULTS = [
    ("tts+error200", "wav", "bad_response", "error object in HTTP 200: model is loading"),
    ("tts+html", "wav", "bad_response", "content-type text/html (191 bytes), expected wav audio"),
    ("tts+corrupt", "wav", "bad_response", "corrupt wav audio: no data chunk"),
    ("tts+corrupt", "mp3", "bad_response", "corrupt mp3 audio: no complete MPEG layer III frame"),
    ("tts+corrupt", "flac", "bad_response", "corrupt flac audio: no 34-byte STREAMINFO block"),
    ("tts+corrupt", "opus", "bad_response", "corrupt opus audio: no complete Ogg page at byte 0"),
    ("tts+corrupt", "pcm", "bad_response", "corrupt pcm audio: 13 bytes is not a whole number of 16-bit samples"),
    ("tts+zerolen", "wav", "empty", "reply has no audio (0 bytes, content-type audio/wav)"),
    ("tts+nosamples", "wav", "empty", "wav audio has a valid header but no samples (44 bytes)"),
    ("tts+nosamples", "flac", "empty", "flac audio has a valid header but no samples"),
    ("tts+nosamples", "opus", "empty", "opus audio has a valid header but no samples"),
    ("tts+wrongformat", "wav", "schema", "asked for wav audio, got mp3"),
    ("tts+wrongformat", "mp3", "schema", "asked for mp3 audio, got wav"),
    ("tts+wrongformat", "pcm", "schema", "asked for pcm audio, got mp3"),
    # pcm has no header: what came must say it is audio, and not be a page or an error body sent as audio
    (
        "tts+mislabel=html",
        "pcm",
        "bad_response",
        "HTML page '502 Bad Gateway' (138 bytes, content-type application/octet-stream), expected pcm audio",
    ),
    ("tts+mislabel=json", "pcm", "bad_response", "error object in HTTP 200: upstream connect error"),
    ("tts+mislabel=image", "pcm", "bad_response", "content-type image/png (72000 bytes), expected pcm audio"),
]


TRANSCRIPTION_FAULTS = [
    ("whisper+empty", "empty", "transcription of the spoken canary sentence is empty"),
    ("whisper+notext", "schema", "reply has no 'text' field"),
    ("whisper+wrongshape", "schema", "'text' is list, expected a string"),
    ("whisper+error200", "bad_response", "error object in HTTP 200: model is loading"),
    ("whisper+status=415", "client_error", "HTTP 415 from POST /v1/audio/transcriptions"),
]


# What real servers say when they fail (testbed ERROR_SHAPES and STREAM_SHAPES, README "What servers say"): the
# model name (shape=NAME answers that server's error body, sshape=NAME puts its error in a stream), streamed or
# not, the class, and the server's words that the reason must carry.
SHAPE_FAULTS = [
    (
        "s+shape=openai-quota",
        False,
        "quota",
        "HTTP 429 from POST /v1/chat/completions after",
    ),
    (
        "s+shape=openai-quota",
        True,
        "quota",
        ": You exceeded your current quota, please check your plan and billing details. (insufficient_quota)",
    ),
    ("s+shape=openai-ratelimit", False, "rate_limited", ": Rate limit reached for requests (rate_limit_exceeded)"),
    ("s+shape=vllm", False, "client_error", "maximum context length is 2048 tokens. However, you requested 4096"),
    ("s+shape=vllm-flat", False, "client_error", ": The model `gemma-9` does not exist. (NotFoundError)"),
    ("s+shape=tgi-overloaded", False, "rate_limited", "HTTP 429 from POST /v1/chat/completions after"),
    ("s+shape=tgi-overloaded", True, "rate_limited", "s: Model is overloaded"),
    ("s+shape=tgi-validation", False, "client_error", ": Input validation error: `inputs` must have less than 2048"),
    (
        "s+shape=llamacpp",
        False,
        "client_error",
        ": the request exceeds the available context size, try increasing it (exceed_context_size_error)",
    ),
    ("s+shape=ollama", False, "client_error", ': model "llama9" not found, try pulling it first'),
    ("s+shape=ollama-openai", True, "client_error", ': model "llama9" not found (api_error)'),
    ("s+shape=fastapi-detail", False, "server_error", "HTTP 503 from POST /v1/chat/completions after"),
    ("s+shape=fastapi-detail", True, "server_error", "s: model is still loading"),
    ("s+shape=fastapi-validation", False, "client_error", "HTTP 422 from POST /v1/chat/completions after"),
    ("s+shape=fastapi-validation", True, "client_error", "s: body.model: Field required"),
    ("s+shape=whisper", False, "client_error", "s: unknown model: whisper-9"),
    ("s+shape=error-error", False, "server_error", "s: upstream refused the request"),
    ("s+shape=litellm-budget", False, "quota", ": Budget has been exceeded! Current cost: 10.2, Max budget: 10.0"),
    (
        "s+shape=azure-filter",
        False,
        "client_error",
        "content management policy. (content_filter, ResponsibleAIPolicyViolation)",
    ),
    ("s+shape=azure-quota", False, "quota", "HTTP 403 from POST /v1/chat/completions after"),
    ("s+shape=azure-quota", True, "quota", "s: Out of call volume quota for OpenAI API."),
    ("s+shape=azure-ratelimit", False, "rate_limited", ": Requests have exceeded token rate limit of your current"),
    ("s+shape=anthropic-overloaded", False, "server_error", "HTTP 529 from POST /v1/chat/completions after"),
    ("s+shape=anthropic-overloaded", True, "server_error", "s: Overloaded (overloaded_error)"),
    (
        "s+shape=anthropic-spend",
        False,
        "quota",
        ": Your organization has reached its monthly spend limit. (rate_limit_error, enforced_spend_limit_reached)",
    ),
    ("s+shape=anthropic-credit", False, "quota", "HTTP 400 from POST /v1/chat/completions after"),
    ("s+shape=anthropic-credit", True, "quota", "s: Your credit balance is too low to access the Anthropic API."),
    ("s+shape=openrouter-credits", False, "quota", "HTTP 402 from POST /v1/chat/completions after"),
    ("s+shape=openrouter-credits", True, "quota", "s: Insufficient credits. Add more credits."),
    ("s+shape=openrouter-provider", False, "server_error", ": Provider returned error; model is overloaded; provider"),
    ("s+shape=plain", False, "server_error", "s: Internal Server Error"),
    ("s+shape=sse", False, "client_error", "s: prompt is too long"),
    ("s+shape=hostile", False, "client_error", r"s: see \u202etxt.exe\u001b[31m here"),
    ("s+shape=ok200", False, "bad_response", "error object in HTTP 200: streaming is not supported for this model"),
    (
        "s+shape=ok200",
        True,
        "bad_response",
        "asked for a stream, got content-type application/json: streaming is not supported for this model",
    ),
    (
        "s+sshape=llamacpp-field",
        True,
        "stream_broken",
        "error event in the stream after 3 events: llama_decode failed (server_error)",
    ),
    (
        "s+sshape=ollama-bare",
        True,
        "stream_broken",
        "error event in the stream after 3 events: model runner has unexpectedly stopped (api_error)",
    ),
    ("s+sshape=vllm-flat", True, "stream_broken", "error event in the stream after 3 events: engine dead"),
    ("s+sshape=tgi", True, "stream_broken", "after 3 events: Request failed during generation: CUDA out of memory"),
    ("s+sshape=openrouter-credits", True, "quota", "error event in the stream after 3 events: Insufficient credits"),
]

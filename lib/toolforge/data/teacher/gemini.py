"""Gemini through the google-genai SDK: the registry's tools as FunctionDeclarations, errors mapped
to what the slot pool needs to know.

The SDK's own retries stay off (``HttpRetryOptions(attempts=1)``): the pool owns backoff, so the two
never stack. The SDK reads ``$GOOGLE_GEMINI_BASE_URL`` itself, which points the client at any
Gemini-compatible endpoint (the tests use it for a fake server).
"""
from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

from toolforge.registry import Registry
from toolforge.data.teacher.backend import Reply, SlotError, TeacherConfig, unreachable
from toolforge.data.teacher.keys import Key


def http_errors(name: str) -> tuple[type[BaseException], ...]:
    """The error class ``name`` of httpx and of httpx2 (the SDK uses either): ConnectError for a
    refused connection or a DNS failure, TransportError for those and timeouts."""
    found: list[type[BaseException]] = []
    for module in ("httpx", "httpx2"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        found.append(getattr(mod, name))
    return tuple(found)


def parse_duration(text: Any) -> float | None:
    """Seconds from a protobuf Duration string such as '17s' or '0.5s'."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", str(text or ""))
    return float(m.group(1)) if m else None


def classify_api_error(code: int, details: Any, message: str = "") -> SlotError:
    """A SlotError for a Gemini error response (``details`` is the decoded JSON body)."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    items = error.get("details") or [] if isinstance(error, dict) else []
    retry_after, quota_ids = None, []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("@type", "").endswith("RetryInfo"):
            retry_after = parse_duration(item.get("retryDelay"))
        for violation in item.get("violations") or []:
            if isinstance(violation, dict) and violation.get("quotaId"):
                quota_ids.append(str(violation["quotaId"]))
    message = (message or "").strip()[:200]
    if code == 429:
        daily = [q for q in quota_ids if "PerDay" in q]
        if daily:
            return SlotError("daily", f"daily quota exhausted ({daily[0]})", retry_after)
        return SlotError("transient", f"429 {quota_ids[0] if quota_ids else 'rate limited'}", retry_after)
    if code in (408, 499) or code >= 500:
        return SlotError("transient", f"HTTP {code} {message}".strip(), retry_after)
    status = str(error.get("status", "")) if isinstance(error, dict) else ""
    if code == 400 and status == "INVALID_ARGUMENT" and "API_KEY" not in json.dumps(items) \
            and "API key" not in message:
        return SlotError("refused", f"HTTP 400 {message}".strip())
    # A bad key (400 API_KEY_INVALID), 401, 403, 404 (unknown model), 400 FAILED_PRECONDITION
    # (region not supported): retrying the same slot cannot help.
    return SlotError("dead", f"HTTP {code} {message}".strip())


class GeminiBackend:
    name = "gemini"

    def __init__(self, cfg: TeacherConfig, registry: Registry):
        from google.genai import types

        self.cfg, self.types = cfg, types
        self._declarations = registry.to_gemini_declarations()
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        # where the SDK sends requests (for messages): the config's URL, else the SDK's own choice
        self.endpoint = cfg.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or "https://generativelanguage.googleapis.com"
        self._connect_errors, self._transport_errors = http_errors("ConnectError"), http_errors("TransportError")

    def _client(self, key: Key | None) -> Any:
        if key is None:
            raise SlotError("dead", "the gemini backend needs an API key")
        with self._lock:
            client = self._clients.get(key.label)
            if client is None:
                from google import genai

                options = self.types.HttpOptions(
                    timeout=max(1, int(self.cfg.timeout_s * 1000)), api_version=self.cfg.api_version,
                    base_url=self.cfg.base_url, retry_options=self.types.HttpRetryOptions(attempts=1))
                client = self._clients[key.label] = genai.Client(api_key=key.secret, http_options=options)
            return client

    def _generate(self, key: Key | None, model: str, contents: str, config: Any) -> Any:
        from google.genai import errors

        client = self._client(key)
        try:
            return client.models.generate_content(model=model, contents=contents, config=config)
        except errors.APIError as e:
            raise classify_api_error(e.code or 0, e.details, key.scrub(e.message or "")) from None
        except self._connect_errors as e:
            raise unreachable(self.endpoint, e) from None
        except self._transport_errors as e:
            raise SlotError("transient", f"{type(e).__name__} (timeout or connection)") from None
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            # A 200 whose body is not the JSON the SDK expects (pydantic/json errors are ValueErrors).
            raise SlotError("transient", f"unreadable response ({type(e).__name__})") from None

    def label(self, key: Key | None, model: str, system: str, query: str) -> Reply:
        t = self.types
        config = t.GenerateContentConfig(
            system_instruction=system, temperature=self.cfg.temperature,
            tools=[t.Tool(function_declarations=self._declarations)],
            tool_config=t.ToolConfig(function_calling_config=t.FunctionCallingConfig(mode="AUTO")),
            automatic_function_calling=t.AutomaticFunctionCallingConfig(disable=True))
        response = self._generate(key, model, query, config)
        calls = [{"name": fc.name, "arguments": dict(fc.args or {})} for fc in response.function_calls or []]
        return Reply(calls=calls, text=_text(response))

    def generate(self, key: Key | None, model: str, prompt: str, temperature: float) -> str:
        config = self.types.GenerateContentConfig(temperature=temperature)
        return _text(self._generate(key, model, prompt, config))


def _text(response: Any) -> str:
    """The text parts of the first candidate (``response.text`` warns when there are calls too)."""
    try:
        parts = response.candidates[0].content.parts or []
    except (AttributeError, IndexError, TypeError):
        return ""
    return "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False))


"""Any OpenAI-compatible chat-completions server with tools (vLLM, llama.cpp, Ollama, ...), over
plain HTTP, so that a user without Gemini keys can distil from a model they run themselves."""
from __future__ import annotations

from typing import Any

import httpx

from toolforge.registry import Registry
from toolforge.data.teacher.backend import Reply, SlotError, TeacherConfig, unreachable
from toolforge.data.teacher.keys import Key


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


class OpenAICompatBackend:
    name = "openai"

    def __init__(self, cfg: TeacherConfig, registry: Registry, base_url: str):
        self.cfg, self.url = cfg, base_url.rstrip("/") + "/chat/completions"
        self._tools = registry.to_openai_tools()
        self._http = httpx.Client(timeout=cfg.timeout_s)

    def _post(self, key: Key | None, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key.secret}"} if key is not None else {}
        try:
            response = self._http.post(self.url, json=body, headers=headers)
        except httpx.ConnectError as e:  # refused, DNS failure: nothing listens there
            raise unreachable(self.url, e) from None
        except httpx.TransportError as e:
            raise SlotError("transient", f"{type(e).__name__} (timeout or connection)") from None
        code = response.status_code
        if code == 429 or code == 408 or code >= 500:
            raise SlotError("transient", f"HTTP {code}", _retry_after(response))
        if code in (401, 403):  # the body is not shown: some servers echo part of the key
            raise SlotError("dead", f"HTTP {code} (key rejected)")
        body = key.scrub(response.text[:200]) if key is not None else response.text[:200]
        if code == 400:  # this request refused (e.g. too long): the job fails, the slot is fine
            raise SlotError("refused", f"HTTP 400 {body}".strip())
        if code != 200:  # 404: unknown model or wrong URL
            raise SlotError("dead", f"HTTP {code} {body}".strip())
        try:
            data = response.json()
            message = data["choices"][0]["message"]
            if not isinstance(message, dict):
                raise TypeError("message is not an object")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise SlotError("transient", f"unreadable response ({type(e).__name__})") from None
        return message

    def label(self, key: Key | None, model: str, system: str, query: str) -> Reply:
        message = self._post(key, {
            "model": model, "temperature": self.cfg.temperature, "tools": self._tools, "tool_choice": "auto",
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": query}]})
        calls = []
        for call in message.get("tool_calls") or []:
            function = (call or {}).get("function") or {}
            # ``arguments`` is a JSON string; label.py decodes it and rejects it when malformed.
            calls.append({"name": function.get("name"), "arguments": function.get("arguments")})
        return Reply(calls=calls, text=message.get("content") or "")

    def generate(self, key: Key | None, model: str, prompt: str, temperature: float) -> str:
        message = self._post(key, {"model": model, "temperature": temperature,
                                   "messages": [{"role": "user", "content": prompt}]})
        return message.get("content") or ""

"""A small synchronous client of the local API for the CLI (stdlib only: starts fast)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlencode, urlsplit


class DaemonUnreachable(Exception):
    """Nothing answers at the API address."""


class ApiError(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ApiClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        self.base_url = base_url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.token = token
        self.timeout = timeout

    def get(self, path: str, **query: Any) -> Any:
        clean = {k: v for k, v in query.items() if v is not None}
        return self._request("GET", path + (f"?{urlencode(clean)}" if clean else ""))

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request("POST", path, body or {})

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise DaemonUnreachable(f"no edge daemon at {self.base_url} ({exc})") from None
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = {"error": "bad_response", "message": raw[:200].decode("utf-8", "replace")}
        if resp.status >= 400:
            p = payload if isinstance(payload, dict) else {}
            raise ApiError(resp.status, p.get("error", "error"), p.get("message", resp.reason))
        return payload

"""The chatbot client (DESIGN section 6): ``POST CHATBOT_URL`` with a signed ``ChatbotRequest``.

- Signature: ``X-Relay-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` over the exact bytes sent,
  computed afresh for every attempt (a retry after a long ``Retry-After`` still carries a current ``t``).
- 200 (and 201) → the replies of the ``ChatbotResponse`` body; 204 → no reply; 202 → ``LATER``: no reply now, the
  bot posts its answer later to the late-answer function (``functions/late``).
- 408, 429, 5xx and failures to connect are retried (tenacity): exponential backoff with jitter, or exactly the
  server's ``Retry-After`` (seconds or an HTTP date). Attempts stop at ``max_attempts`` or when the next attempt
  would not finish before ``deadline``; then ``ChatbotUnavailable`` propagates and the record is retried later.
- A call the bot received but did not answer in time (read timeout, connection dropped mid-answer) is not retried in
  this invocation: the bot may still be working on it, and asking again now would have it answer twice (an LLM's
  cost twice, and two answers that may differ). ``ChatbotUnavailable(maybe_answering=True)`` propagates at once.
- Any other status is permanent: ``ChatbotRejected``, never retried. A 200 whose body is not a valid response is
  ``ChatbotInvalidResponse`` (also permanent: asking again would not make the bot answer differently).
- Redirects are not followed (a POST must not silently turn into a GET): a 3xx is a permanent rejection.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum

import urllib3
from aws_lambda_powertools import Logger
from pydantic import ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)
from tenacity.stop import stop_base

from connector.contracts import ChatbotReply, ChatbotRequest, ChatbotResponse
from functions.inbound.errors import ChatbotInvalidResponse, ChatbotRejected, ChatbotUnavailable, OutOfTime

logger = Logger(service="wa-relay", child=True)

SIGNATURE_HEADER = "X-Relay-Signature"
EVENT_ID_HEADER = "X-Relay-Event-Id"
RESPONSE_MAX_BYTES = 2 * 1024 * 1024
"""A larger answer is invalid (20 replies of 64 Ki characters fit well below it)."""
MIN_ATTEMPT_S = 0.5
"""An attempt is not started with less time than this left before the deadline (and, see ``ask``, never with less
than its whole timeout)."""


class Deferred(Enum):
    LATER = "later"


LATER = Deferred.LATER
"""What ``ask`` returns for a ``202``: the bot will answer later, through the late-answer function."""
RETRYABLE = frozenset({408, 429})

http = urllib3.PoolManager(num_pools=2, maxsize=10, retries=False)
"""One pool per execution environment, reused across invocations (keep-alive to the chatbot); one connection per
chat a batch answers at once."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; ``None`` when absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_s: float = 0.5
    max_s: float = 8.0


def backoff_s(policy: RetryPolicy, attempt: int) -> float:
    """Wait after failed attempt ``attempt`` (1-based): ``base * 2^(attempt-1)`` plus up to ``base`` of jitter, capped
    at ``max_s``."""
    return min(policy.max_s, policy.base_s * 2.0 ** (attempt - 1) + random.uniform(0, policy.base_s))


class Chatbot:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        pool: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._pool = pool or http
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"Chatbot({self.url!r})"

    def at(self, url: str) -> Chatbot:
        """The same client (secret, timeouts, retries, pool) for a session's own chatbot URL."""
        if url == self.url:
            return self
        return Chatbot(
            url, self._secret, timeout_s=self.timeout_s, retry=self.retry, pool=self._pool, sleep=self._sleep
        )

    def ask(self, request: ChatbotRequest, *, deadline: float) -> list[ChatbotReply] | Deferred:
        """The bot's replies to ``request``; ``deadline`` is a ``time.monotonic()`` value no attempt may outlast.

        An attempt starts only when its whole ``timeout_s`` fits before ``deadline``: a call cut short by the end of
        the invocation would be abandoned while the bot may still be answering it, and the retry would make the bot
        answer twice. Without the time, ``OutOfTime``: the record is retried at once by the next invocation, the bot
        not asked here."""
        if deadline - time.monotonic() < max(MIN_ATTEMPT_S, self.timeout_s):
            raise OutOfTime("not enough time left in this invocation for a whole chatbot call")
        retrying = Retrying(
            retry=retry_if_exception(_retry_now),
            wait=self._wait,
            stop=stop_after_attempt(self.retry.max_attempts) | _OutOfTime(deadline, self.timeout_s),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(self._post, request, deadline)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ChatbotUnavailable) and error.retry_after is not None:
            return error.retry_after
        return backoff_s(self.retry, state.attempt_number)

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "chatbot unavailable, retrying",
            extra={
                "attempt": state.attempt_number,
                "status": getattr(error, "status", None),
                "error": str(error),
                "sleep_s": round(state.upcoming_sleep, 3),
            },
        )

    def _post(self, request: ChatbotRequest, deadline: float) -> list[ChatbotReply] | Deferred:
        body = request.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            EVENT_ID_HEADER: request.event_id,
            SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
        }
        timeout = max(0.1, min(self.timeout_s, deadline - time.monotonic()))
        logger.debug("calling chatbot", extra={"url": self.url, "timeout_s": round(timeout, 3)})
        try:
            response = self._pool.request(
                "POST",
                self.url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=timeout),
                retries=False,
                redirect=False,
                preload_content=False,
            )
            complete = False
            try:
                content = response.read(RESPONSE_MAX_BYTES + 1)
                complete = len(content) <= RESPONSE_MAX_BYTES
            finally:
                # An unread remainder would poison the pooled connection: close it instead of returning it.
                if complete:
                    response.release_conn()
                else:
                    response.close()
        except (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.NewConnectionError) as e:
            raise ChatbotUnavailable(f"chatbot not reachable: {type(e).__name__}") from e
        except urllib3.exceptions.HTTPError as e:
            # Sent, or possibly sent (a reused keep-alive connection can drop as the request goes out): the bot may
            # be answering it.
            raise ChatbotUnavailable(f"chatbot did not answer: {type(e).__name__}", maybe_answering=True) from e

        status = response.status
        if status in (200, 201):
            if not complete:
                raise ChatbotInvalidResponse(f"response larger than {RESPONSE_MAX_BYTES} bytes", status=status)
            try:
                return ChatbotResponse.model_validate_json(content).replies
            except ValidationError as e:
                kinds = sorted({err["type"] for err in e.errors(include_input=False, include_url=False)})
                raise ChatbotInvalidResponse(f"invalid response body ({', '.join(kinds)})", status=status) from None
        if status == 202:
            return LATER
        if status == 204:
            return []
        if status in RETRYABLE or status >= 500:
            raise ChatbotUnavailable(
                f"chatbot answered {status}",
                status=status,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        raise ChatbotRejected(f"chatbot answered {status}", status=status)


def _retry_now(error: BaseException) -> bool:
    return isinstance(error, ChatbotUnavailable) and not error.maybe_answering


class _OutOfTime(stop_base):
    """Stop when the next attempt (after its wait) could not run its whole timeout before ``deadline``."""

    def __init__(self, deadline: float, attempt_s: float) -> None:
        self.deadline = deadline
        self.attempt_s = max(MIN_ATTEMPT_S, attempt_s)

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep + self.attempt_s > self.deadline

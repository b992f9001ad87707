"""The demo's on-call human: reads each page, and approves what a page asks approval for.

:class:`OnCall` stands in for the person holding the pager. When a page arrives with an
``approve`` link (see ``escalation.control.ControlPlane.approval_links``) it waits a
human-like moment, then POSTs the link to the action API with its own bearer token — the
link's token is the capability, the bearer the identity, exactly as a person clicking the
link in a browser session would. Every answer is kept in :attr:`OnCall.answers` and said in
one line; a refusal (403 no decision rights, 410 expired, 409 already decided, ...) is
said, not raised: the demo summary counts it as a problem.

Only the approval part of the link is parsed here; the rest is the control plane's business:

>>> approval_id_of("http://127.0.0.1:8088/v1/approvals/apr_1f/approve?token=t.x")
'apr_1f'
>>> approval_id_of("http://127.0.0.1:8088/v1/actions/req_1") is None
True
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson
from yarl import URL

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# A person reads the page, looks at the graph and clicks: long enough that the summary's
# approval latency is visibly a human's, short enough not to slow the demo down.
DEFAULT_DELAY_S = 1.5
# The action API answers from Redis; anything slower than this is a problem worth showing.
DEFAULT_TIMEOUT_S = 10.0


def approval_id_of(link: str) -> str | None:
    """The ``{id}`` of a ``.../approvals/{id}/approve`` (or ``/deny``) link, else None."""
    parts = URL(link).path.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-3] == "approvals" and parts[-1] in ("approve", "deny"):
        return parts[-2] or None
    return None


@dataclass(frozen=True, slots=True)
class OnCallAnswer:
    """What the API answered one approve click; ``status`` None when no answer came."""

    approval_id: str
    status: int | None
    code: str              # "approved", or the API's error code ("approval_expired", ...)
    detail: str
    after_s: float         # from the page's arrival to the API's answer
    who: str = "on-call"   # the on-call's own name for themselves (``OnCall.name``)
    approver: str | None = None  # as the API recorded it, e.g. "human:alice"
    action: str | None = None
    target: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    def to_dict(self) -> dict[str, Any]:
        return {"approval_id": self.approval_id, "status": self.status, "code": self.code,
                "detail": self.detail, "after_s": round(self.after_s, 3), "who": self.who,
                "approver": self.approver, "action": self.action, "target": self.target}

    def line(self) -> str:
        """The sentence the demo prints.

        >>> OnCallAnswer("apr_1", 200, "approved", "", 1.52, "alice", "human:alice",
        ...              "failover_region", "service/shipping").line()
        'on-call human:alice approved apr_1 (failover_region service/shipping) after 1.5 s'
        >>> OnCallAnswer("apr_2", 410, "approval_expired", "expired at 12", 1.5, "alice").line()
        'on-call alice could not approve apr_2: 410 approval_expired — expired at 12'
        """
        if self.ok:
            return (f"on-call {self.approver} approved {self.approval_id} "
                    f"({self.action} {self.target}) after {self.after_s:.1f} s")
        status = "no answer" if self.status is None else str(self.status)
        return (f"on-call {self.who} could not approve {self.approval_id}: {status} {self.code}"
                f" — {self.detail}")


class OnCall:
    """Approves every page that carries an ``approve`` link, ``delay_s`` after it arrived.

    ``token`` is the person's bearer token for the action API; ``name`` is how the lines
    name them before the API has said who they are. ``on_page`` is the
    :class:`~hotpath.demo.receivers.PageReceiver` callback: it only schedules the answer, so
    the pager's request is not held up. Use as an async context manager (it owns its HTTP
    session); leaving it waits for the answers still under way. ``clock`` measures
    ``after_s`` (monotonic seconds); ``say`` gets each answer's line (without it: the
    module's logger, refusals as warnings).
    """

    def __init__(self, token: str, *, name: str = "on-call", delay_s: float = DEFAULT_DELAY_S,
                 timeout_s: float = DEFAULT_TIMEOUT_S, clock: Clock = time.monotonic,
                 say: Callable[[str], None] | None = None) -> None:
        if delay_s < 0:
            raise ValueError(f"on-call: delay_s must be >= 0, got {delay_s:g}")
        self._token = token
        self.name = name
        self._delay_s = delay_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._say = say
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[OnCallAnswer]] = set()
        self._seen: set[str] = set()
        self.answers: list[OnCallAnswer] = []

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            await self.drain()
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    def on_page(self, page: Mapping[str, Any]) -> None:
        """A page arrived: if it asks for an approval not seen before, answer it soon."""
        links = page.get("links") or {}
        link = links.get("approve") if isinstance(links, Mapping) else None
        if not isinstance(link, str) or link in self._seen:
            return
        self._seen.add(link)
        task = asyncio.get_running_loop().create_task(self.approve(link, self._clock()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the answers under way (each bounded by the delay and the timeout)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def approve(self, link: str, paged_at: float) -> OnCallAnswer:
        """Wait the human moment, POST ``link`` with the bearer token, keep and say the answer."""
        if self._session is None:
            raise RuntimeError("on-call: use `async with OnCall(...)` before answering pages")
        await asyncio.sleep(self._delay_s)
        approval_id = approval_id_of(link) or "?"
        try:
            async with self._session.post(
                link, headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
            ) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            answer = OnCallAnswer(approval_id, None, "unreachable",
                                  f"{type(e).__name__}: {e}", self._clock() - paged_at, self.name)
        else:
            answer = _answer(approval_id, status, raw, self._clock() - paged_at, self.name)
        self.answers.append(answer)
        line = answer.line()
        if self._say is not None:
            self._say(line)
        elif answer.ok:
            log.info("%s", line)
        else:
            log.warning("%s", line)
        return answer


def _answer(approval_id: str, status: int, raw: bytes, after_s: float,
            who: str) -> OnCallAnswer:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return OnCallAnswer(approval_id, status, "not_json",
                            raw[:200].decode("utf-8", "replace"), after_s, who)
    if status != 200:
        detail = body.get("detail") or "; ".join(map(str, body.get("problems") or []))
        return OnCallAnswer(approval_id, status, str(body.get("error", "")), str(detail),
                            after_s, who)
    request = body.get("request")
    if not isinstance(request, dict):
        request = {}
    return OnCallAnswer(
        str(body.get("approval_id", approval_id)), status, str(body.get("state", "")),
        str(body.get("note", "")), after_s, who, approver=body.get("approver"),
        action=request.get("action"), target=request.get("target"))

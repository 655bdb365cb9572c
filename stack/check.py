"""The post-deploy check: every service's real readiness endpoint, probed at once.

A service still starting (HTTP 503, a reset connection, a slow answer) is retried until the
timeout. A refused connection means nothing listens on the published port — Docker publishes a
running container's port even before the process inside listens — so a service refused for
`down_after` seconds is reported down at once instead of being waited for.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from program.metric_names import COLLECTOR_ITEMS, COLLECTOR_LOSS_COUNTERS, collector_loss_selector
from program.services import SERVICES

REQUEST_TIMEOUT_SECONDS = 2.0


class NotReady(Exception):
    """The service answered, or half-answered, but is not ready yet."""


class Refused(Exception):
    """Nothing listens on the port."""


class WrongAnswer(Exception):
    """A client error (404, 401, ...): waiting will not change it, so it is not retried."""


def judge(response: httpx.Response, json_field: Optional[tuple[str, str]]) -> Optional[str]:
    """None when the answer says ready, else why not."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {_snippet(response.text)}"
    if json_field is None:
        return None
    key, expected = json_field
    try:
        found = response.json().get(key)
    except (ValueError, AttributeError):
        return f"not JSON: {_snippet(response.text)}"
    return None if found == expected else f"{key} {found!r}, not {expected!r}"


def _was_refused(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, ConnectionRefusedError) or "refused" in str(error).lower():
            return True
        error = error.__cause__ or error.__context__
    return False


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return repr(text[:80] + ("…" if len(text) > 80 else ""))


@dataclass(frozen=True)
class Probe:
    service: str
    output: str  # the stack output holding the URL of the port the service answers on
    path: str
    json_field: Optional[tuple[str, str]] = None

    def url(self, outputs: dict[str, str]) -> str:
        published = urlsplit(outputs[self.output])
        return f"{published.scheme}://{published.netloc}{self.path}"


PROBES = tuple(Probe(service.name, service.port(service.readiness.port).output, service.readiness.path,
                     service.readiness.json_field) for service in SERVICES)

REQUIRED_OUTPUTS = tuple(probe.output for probe in PROBES)


@dataclass
class Result:
    service: str
    url: str
    ready: bool = False
    seconds: float = 0.0
    reason: str = ""
    attempts: int = 0

    def line(self) -> str:
        state = "ready" if self.ready else "NOT READY"
        why = "" if self.ready else f"  {self.reason}"
        return f"{self.service:<15} {state:<9} {self.seconds:6.1f}s  {self.url}{why}"


@dataclass
class CheckOptions:
    timeout: float = 120.0
    down_after: float = 5.0
    # Called after every attempt, for a progress display.
    on_attempt: Callable[[Result], None] = lambda result: None


async def probe_one(client: httpx.AsyncClient, probe: Probe, url: str, options: CheckOptions) -> Result:
    result = Result(probe.service, url)
    started = time.monotonic()
    refused_since: Optional[float] = None

    def worth_retrying(error: BaseException) -> bool:
        if isinstance(error, Refused):
            return time.monotonic() - refused_since < options.down_after
        return isinstance(error, NotReady)

    async def attempt() -> None:
        nonlocal refused_since
        result.attempts += 1
        try:
            response = await client.get(url, timeout=REQUEST_TIMEOUT_SECONDS)
        except httpx.ConnectError as error:
            if not _was_refused(error):
                raise NotReady(f"cannot connect: {error}") from None
            refused_since = refused_since or time.monotonic()
            host = urlsplit(url).netloc
            raise Refused(f"refused: nothing listens on {host} (is the container running?)") from None
        except httpx.TimeoutException:
            refused_since = None
            raise NotReady(f"no answer within {REQUEST_TIMEOUT_SECONDS:g}s") from None
        except httpx.TransportError as error:  # reset or closed: the port is published, the process not up
            refused_since = None
            raise NotReady(f"connection dropped ({type(error).__name__})") from None
        refused_since = None
        reason = judge(response, probe.json_field)
        if reason and 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            raise WrongAnswer(f"{reason} (is this the service's port?)")
        if reason:
            raise NotReady(reason)

    retrying = AsyncRetrying(
        stop=stop_after_delay(options.timeout),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        retry=retry_if_exception(worth_retrying),
        reraise=True,
    )
    try:
        async for try_ in retrying:
            with try_:
                try:
                    await attempt()
                except (Refused, NotReady, WrongAnswer) as error:
                    result.reason = str(error)
                    raise
                finally:
                    result.seconds = time.monotonic() - started
                    options.on_attempt(result)
        result.ready, result.reason = True, ""
    except (Refused, WrongAnswer) as error:
        result.reason = str(error)
    except NotReady as error:
        result.reason = f"{error}; still not ready after {options.timeout:g}s"
    result.seconds = time.monotonic() - started
    options.on_attempt(result)
    return result


async def check(outputs: dict[str, str], options: CheckOptions) -> list[Result]:
    async with httpx.AsyncClient(follow_redirects=False) as client:
        return list(await asyncio.gather(*(probe_one(client, probe, probe.url(outputs), options) for probe in PROBES)))


async def collector_losses(prometheus_url: str) -> list[str]:
    """What the collector refused or dropped since it started, from its own counters as
    Prometheus scraped them: one phrase per non-zero counter; none when nothing was lost."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{prometheus_url.rstrip('/')}/api/v1/query", timeout=REQUEST_TIMEOUT_SECONDS,
                                    params={"query": f"{collector_loss_selector()} > 0"})
    losses = []
    for series in sorted(response.json().get("data", {}).get("result", []), key=lambda s: s["metric"]["__name__"]):
        labels = series["metric"]
        counter, items = next((counter, items) for counter in COLLECTOR_LOSS_COUNTERS for items in COLLECTOR_ITEMS
                              if labels["__name__"] == f"{counter}_{items}")
        component = next((f"{kind} {labels[kind]}" for kind in ("receiver", "processor", "exporter") if kind in labels), "")
        losses.append(f"{component} {COLLECTOR_LOSS_COUNTERS[counter]} {float(series['value'][1]):g} "
                      f"{COLLECTOR_ITEMS[items]} ({labels['__name__']})")
    return losses

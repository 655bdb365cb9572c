"""The post-deploy check: every service's real readiness endpoint, probed at once; then each
service's own word on what it is and which version, against the image the stack pins; then
Grafana's own view of its datasources.

A service still starting (HTTP 503, a reset connection, a slow answer) is retried until the
timeout. A refused connection means nothing listens on the published port — Docker publishes a
running container's port even before the process inside listens — so a service refused for
`down_after` seconds is reported down at once instead of being waited for. An answer that will
not change by waiting (a 4xx, a 200 that is not the service's JSON) is reported at once.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping, Optional
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from program.metric_names import COLLECTOR_ITEMS, COLLECTOR_LOSS_COUNTERS, collector_loss_selector
from program.services import DATASOURCE_UIDS, SERVICES, VERSION_PROFILES, BuildInfo, image_version

REQUEST_TIMEOUT_SECONDS = 2.0
# How far apart a process's start, as its own metrics and its readiness answer tell it, may be.
STARTED_TOLERANCE_SECONDS = 5.0


class NotReady(Exception):
    """The service answered, or half-answered, but is not ready yet."""


class Refused(Exception):
    """Nothing listens on the port."""


class WrongAnswer(Exception):
    """A client error (404, 401, ...), or an answer that is not the service's: waiting will not
    change it, so it is not retried."""


def judge(response: httpx.Response, json_field: Optional[tuple[str, str]]) -> Optional[str]:
    """None when the answer says ready, else why not; raises WrongAnswer for a 200 that is not
    the JSON the service answers with."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {_snippet(response.text)}"
    if json_field is None:
        return None
    key, expected = json_field
    found = _json(response).get(key)
    if found != expected:
        raise WrongAnswer(f"answered {key} {found!r}, not {expected!r}: {_snippet(response.text)}")
    return None


def _json(response: httpx.Response) -> dict:
    try:
        document = response.json()
    except ValueError:
        raise WrongAnswer(f"answered {_snippet(response.text)}, not JSON") from None
    if not isinstance(document, dict):
        raise WrongAnswer(f"answered {_snippet(response.text)}, not a JSON object")
    return document


async def reported_version(client: httpx.AsyncClient, probe: "Probe", base_url: str, prometheus_url: str,
                           readiness: httpx.Response, process_log: Optional[Callable[[str], Optional[str]]]) -> str:
    """The version the service itself reports, as its source at the pinned tag answers, given its
    readiness answer. Raises WrongAnswer when what answered is not that service, NotReady when it
    cannot say yet."""
    info, name = probe.build_info, probe.service
    if info.log_line and process_log:
        # The last start line is the running process's; a log rotated past it, or none to read,
        # leaves the version to Prometheus, which knows any process that ran a while.
        starts = list(re.finditer(info.log_line, await asyncio.to_thread(process_log, name) or ""))
        if starts:
            return starts[-1].group("version")
    if info.prometheus_query:
        response = await client.get(f"{prometheus_url}/api/v1/query", params={"query": info.prometheus_query},
                                    timeout=REQUEST_TIMEOUT_SECONDS)
        if response.status_code != 200:
            raise NotReady(f"cannot ask Prometheus for its version yet (HTTP {response.status_code})")
        answer = _json(response)
        if answer.get("status") != "success":
            raise WrongAnswer(f"cannot tell its version: Prometheus' query API answered {_snippet(response.text)}")
        started = _started(readiness, info.started_key)
        running = [found for found in answer.get("data", {}).get("result", [])
                   if abs(float(found["value"][1]) - started) <= STARTED_TOLERANCE_SECONDS
                   and info.label in found.get("metric", {})]
        if not running:
            raise NotReady(f"Prometheus has not scraped the running process's own metrics yet ({info.prometheus_query})")
        return running[0]["metric"][info.label]
    response = await client.get(base_url + info.path, timeout=REQUEST_TIMEOUT_SECONDS)
    if response.status_code == 503:
        raise NotReady(f"{info.path}: HTTP 503")
    if response.status_code != 200:
        raise WrongAnswer(f"not {name}: {info.path} answered HTTP {response.status_code}: {_snippet(response.text)}")
    if info.metric:
        found = re.search(rf'^{info.metric}\{{[^}}]*\b{info.label}="([^"]+)"', response.text, re.MULTILINE)
        if not found:
            raise WrongAnswer(f"not {name}: {info.path} has no {info.metric} ({_snippet(response.text)})")
        return found.group(1)
    try:
        document = _json(response)
    except WrongAnswer as error:
        raise WrongAnswer(f"not {name}: {info.path} {error}") from None
    key, expected = info.identity
    version = document
    for step in info.version_keys:
        version = version.get(step) if isinstance(version, dict) else None
    if key not in document or (expected is not None and document[key] != expected) or not isinstance(version, str):
        raise WrongAnswer(f"not {name}: {info.path} answered {_snippet(response.text)}")
    return version


def _started(readiness: httpx.Response, key: str) -> float:
    """When the running process started, as its readiness answer says (RFC 3339), in seconds since
    the epoch."""
    value = _json(readiness).get(key)
    try:
        # Go writes nanoseconds; Python reads microseconds.
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", str(value)).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise WrongAnswer(f"its readiness answer has no {key} time: {_snippet(readiness.text)}") from None


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
    json_field: Optional[tuple[str, str]]
    build_info: BuildInfo
    image_key: str

    def base_url(self, outputs: dict[str, str]) -> str:
        published = urlsplit(outputs[self.output])
        return f"{published.scheme}://{published.netloc}"


def probes(versions: str) -> tuple[Probe, ...]:
    """What `check` asks each service, as the version profile's release answers."""
    return tuple(Probe(service.name, service.port(service.readiness.port).output, service.readiness.path,
                       service.readiness.json_field, service.build_info, service.image_key)
                 for service in (service.at(versions) for service in SERVICES))


# Their services, outputs and settings, which are the same at every release.
PROBES = probes(VERSION_PROFILES[0])

REQUIRED_OUTPUTS = tuple(dict.fromkeys((*(probe.output for probe in PROBES), "prometheus_url")))


def images_by_setting(images: Mapping[str, str]) -> dict[str, str]:
    """Each service's image (by service name) under its image setting, as CheckOptions takes them."""
    return {probe.image_key: images[probe.service] for probe in PROBES}


@dataclass
class Result:
    service: str
    url: str
    ready: bool = False
    seconds: float = 0.0
    reason: str = ""
    attempts: int = 0
    version: str = ""
    # Set when the running version is not the one the stack's image names (a failure), or when
    # the image names no version to compare with (said, not a failure).
    version_drift: str = ""
    version_note: str = ""

    @property
    def ok(self) -> bool:
        return self.ready and not self.version_drift

    def line(self) -> str:
        state = "NOT READY" if not self.ready else "VERSION" if self.version_drift else "ready"
        why = f"  {self.reason}" if not self.ready else f"  {self.version_drift}" if self.version_drift else ""
        version = f" {self.version}" if self.ready and self.version else ""
        note = f" ({self.version_note})" if self.version_note else ""
        return f"{self.service:<15} {state:<9} {self.seconds:6.1f}s  {self.url}{version}{note}{why}"


@dataclass
class CheckOptions:
    # The image each service runs, by its image setting: what its version is checked against.
    images: dict[str, str]
    # The version profile the stack runs: how each service tells its version.
    versions: str = VERSION_PROFILES[0]
    timeout: float = 120.0
    down_after: float = 5.0
    # Grafana's admin user and password, when anonymous access is off.
    grafana_auth: Optional[tuple[str, str]] = None
    # Called after every attempt, for a progress display.
    on_attempt: Callable[[Result], None] = lambda result: None
    # What a service's running process has logged, by service name, as the stack's platform
    # keeps it (None: it cannot say); none when only the stack's outputs are known.
    process_log: Optional[Callable[[str], Optional[str]]] = None


async def probe_one(client: httpx.AsyncClient, probe: Probe, outputs: dict[str, str], options: CheckOptions) -> Result:
    url = probe.base_url(outputs) + probe.path
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
        try:
            result.version = await reported_version(client, probe, probe.base_url(outputs),
                                                    outputs["prometheus_url"].rstrip("/"), response,
                                                    options.process_log)
        except httpx.HTTPError as error:
            if probe.build_info.prometheus_query and _was_refused(error):
                raise WrongAnswer("cannot tell its version: the stack's Prometheus refuses connections") from None
            raise NotReady(f"cannot ask its version yet ({type(error).__name__})") from None

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
        _compare_versions(result, options.images[probe.image_key])
    except (Refused, WrongAnswer) as error:
        result.reason = str(error)
    except NotReady as error:
        result.reason = f"{error}; still not ready after {options.timeout:g}s"
    result.seconds = time.monotonic() - started
    options.on_attempt(result)
    return result


def _compare_versions(result: Result, image: str) -> None:
    pinned = image_version(image)
    if pinned is None:
        result.version_note = f"image {image} names no version to compare with"
    elif result.version.removeprefix("v") != pinned:
        result.version_drift = f"version drift: runs {result.version}, the stack's image is {image}"


async def check(outputs: dict[str, str], options: CheckOptions) -> list[Result]:
    async with httpx.AsyncClient(follow_redirects=False) as client:
        return list(await asyncio.gather(*(probe_one(client, probe, outputs, options) for probe in probes(options.versions))))


# How to ask Grafana whether it reaches each datasource: its datasource health API, by uid (it
# needs datasources:query, which Viewer has); Tempo's plugin has no health check, so, as Grafana's
# own "Save & test" does, its /api/echo through Grafana's datasource proxy.
DATASOURCE_NAMES = {"prometheus": "Prometheus", "tempo": "Tempo", "loki": "Loki"}
GRAFANA_ASKS = {service: f"/api/datasources/proxy/uid/{uid}/api/echo" if service == "tempo"
                else f"/api/datasources/uid/{uid}/health" for service, uid in DATASOURCE_UIDS.items()}


@dataclass
class DatasourceView:
    datasource: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"Grafana → {self.datasource}: {'ok' if self.ok else 'FAILED'} ({self.detail})"


async def grafana_view(grafana_url: str, auth: Optional[tuple[str, str]]) -> list[DatasourceView]:
    """What Grafana says of each provisioned datasource: the path a user looks through."""
    async with httpx.AsyncClient(auth=auth, timeout=10.0) as client:

        async def ask(service: str) -> DatasourceView:
            name = DATASOURCE_NAMES[service]
            try:
                response = await client.get(grafana_url.rstrip("/") + GRAFANA_ASKS[service])
            except httpx.HTTPError as error:
                return DatasourceView(name, False, f"Grafana did not answer: {type(error).__name__}")
            if response.status_code in (401, 403):
                return DatasourceView(name, False, f"Grafana refused to say (HTTP {response.status_code}): check with "
                                                   "--stack, so the stack's admin password is used")
            if service == "tempo":
                return DatasourceView(name, response.status_code == 200,
                                      "its API answers through Grafana" if response.status_code == 200 else
                                      f"HTTP {response.status_code}: {_snippet(response.text)}")
            try:
                answer = response.json()
            except ValueError:
                return DatasourceView(name, False, f"HTTP {response.status_code}: {_snippet(response.text)}")
            message = answer.get("message", "") if isinstance(answer, dict) else ""
            return DatasourceView(name, response.status_code == 200 and answer.get("status") == "OK", message)

        return list(await asyncio.gather(*(ask(service) for service in GRAFANA_ASKS)))


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

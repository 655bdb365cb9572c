"""Every config file the stack ships, for each version profile, parsed, and asserted on for what it
means: alike where the releases behave alike, each its own where they differ."""

import re
from pathlib import Path

import pytest
import yaml

from program.log_labels import OTEL_SEVERITY_RANGES, PINO_LEVELS
from program.log_labels import TRACE_ID_METADATA
from program.render import EXEMPLAR_TRACE_ID_LABELS
from program.services import (
    GRAFANA_DASHBOARDS_DIR, LOG_MOUNT, PORTS_BY_NAME, SERVICES, SERVICES_BY_NAME, VERSION_PROFILES, switch_losses,
)
from tests.tools import (
    alloy_blocks, alloy_stream_labels, attributes, rendered_files, run_go_template, source_file_labels, stages,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def rendered(raw=None):
    return {service.name: rendered_files(service.name, raw) for service in SERVICES}


@pytest.fixture(scope="module", params=VERSION_PROFILES)
def versions(request):
    return request.param


@pytest.fixture(scope="module")
def files(versions):
    return rendered({"versions": versions})


def load(files, service, path):
    return yaml.safe_load(files[service][path])


def grafana_expand(text):
    """Grafana's provisioning expands $NAME and ${NAME} from its environment; $$ is a literal $."""
    unescaped = re.findall(r"(?<!\$)\$(?!\$)", text.replace("$$", ""))
    assert not unescaped, f"{text!r} has a $ that Grafana would expand from its environment"
    return text.replace("$$", "$")


# --- Prometheus -------------------------------------------------------------------------------


def test_prometheus_scrapes_the_apps_metrics_and_every_service(files):
    config = load(files, "prometheus", "/etc/prometheus/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {name: [t for group in job["static_configs"] for t in group["targets"]] for name, job in jobs.items()}
    assert targets == {
        "app": ["otel-collector:8889"],
        "otel-collector": ["otel-collector:8888"],
        "prometheus": ["localhost:9090"],
        "tempo": ["tempo:3200"],
        "loki": ["loki:3100"],
        "alloy": ["alloy:12345"],
        "grafana": ["grafana:3000"],
    }
    assert jobs["app"]["honor_labels"] is True
    # The app's metrics within seconds; the stack's own every 15 s.
    assert jobs["app"]["scrape_interval"] == "5s" and config["global"]["scrape_interval"] == "15s"
    assert all("scrape_interval" not in job for name, job in jobs.items() if name != "app")
    # 100,000 (the default) holds under 3 minutes of ~3,000 exemplar-carrying bucket series
    # scraped every 5s; 500,000 about 15 minutes, at ~220 bytes each (~110 MiB of 1024).
    assert config["storage"]["exemplars"]["max_exemplars"] == 500_000


def test_prometheus_keeps_the_names_the_dashboards_and_check_query(files, versions):
    # Prometheus 3 asks for UTF-8 names, and the collector 0.161 then labels its own metrics
    # service.version (seen on a real deployment): legacy names keep them service_version.
    config = load(files, "prometheus", "/etc/prometheus/prometheus.yml")
    assert config["global"].get("metric_name_validation_scheme") == {"seed": None, "current": "legacy"}[versions]


# --- OpenTelemetry Collector -------------------------------------------------------------------


@pytest.fixture(scope="module")
def collector(files):
    return load(files, "otel-collector", "/etc/otelcol-contrib/config.yaml")


def test_collector_takes_otlp_over_grpc_and_http(collector):
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols == {"grpc": {"endpoint": "0.0.0.0:4317", "max_recv_msg_size_mib": 4},
                         "http": {"endpoint": "0.0.0.0:4318", "max_request_body_size": 4 * 2**20}}


def exporter_to(collector, pipeline: str) -> str:
    [name] = collector["service"]["pipelines"][pipeline]["exporters"]
    return name


def test_collector_sends_traces_to_tempo_and_serves_metrics_with_exemplars(collector, versions):
    # otlp (gRPC) at 0.91; otlp_grpc, its name since 0.144, at 0.161.
    assert exporter_to(collector, "traces") == {"seed": "otlp/tempo", "current": "otlp_grpc/tempo"}[versions]
    tempo = collector["exporters"][exporter_to(collector, "traces")]
    assert (tempo["endpoint"], tempo["tls"]) == ("tempo:4317", {"insecure": True})
    prometheus = collector["exporters"]["prometheus"]
    assert prometheus["endpoint"] == "0.0.0.0:8889" and prometheus["enable_open_metrics"] is True
    assert exporter_to(collector, "metrics") == "prometheus"
    if versions == "current":
        # The names and labels 0.91 gives the series, which the dashboards query.
        assert prometheus["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
        assert prometheus["without_scope_info"] is True


def test_collector_pushes_otel_logs_to_loki_labelled_as_the_pino_lines(collector, files, versions):
    [resource, log] = collector["processors"]["transform/log_labels"]["log_statements"]
    assert resource["context"] == "resource" and log["context"] == "log"
    if versions == "seed":
        assert collector["service"]["pipelines"]["logs"] == {
            "receivers": ["otlp"], "processors": ["memory_limiter", "transform/log_labels"], "exporters": ["loki"]}
        loki = collector["exporters"]["loki"]
        assert loki["endpoint"] == "http://loki:3100/loki/api/v1/push"
        # job and env come from the stack (as Alloy's static labels), level from the transform.
        assert loki["default_labels_enabled"] == {"exporter": False, "instance": False, "job": False, "level": True}
        assert resource["statements"] == ['set(attributes["job"], "refly-api")', 'set(attributes["env"], "local")',
                                          'set(attributes["loki.resource.labels"], "job, env")']
        return
    # Into Loki's own OTLP endpoint, which labels a stream with resource attributes only: job and
    # env set on the resource, level moved there from each record, and Loki told those three.
    assert collector["service"]["pipelines"]["logs"] == {
        "receivers": ["otlp"], "processors": ["memory_limiter", "transform/log_labels", "groupbyattrs/level"],
        "exporters": ["otlp_http/loki"]}
    assert collector["exporters"]["otlp_http/loki"]["endpoint"] == "http://loki:3100/otlp"
    assert resource["statements"] == ['set(resource.attributes["job"], "refly-api")',
                                      'set(resource.attributes["env"], "local")']
    assert all(statement.startswith('set(log.attributes["level"]') for statement in log["statements"])
    assert collector["processors"]["groupbyattrs/level"] == {"keys": ["level"]}
    limits = load(files, "loki", "/etc/loki/loki.yaml")["limits_config"]
    assert limits["otlp_config"] == {"resource_attributes": {"ignore_defaults": True, "attributes_config": [
        {"action": "index_label", "attributes": ["job", "env", "level"]}]}}
    # Nothing else labels a stream on either path: no service_name from job, no detected_level,
    # no stream split in shards.
    assert limits["discover_service_name"] == [] and limits["discover_log_levels"] is False
    assert limits["shard_streams"] == {"enabled": False}


def test_collector_keeps_data_while_tempo_or_loki_restart(collector):
    # Exporter defaults at 0.91.0: a queue of 1,000 requests and 5 minutes of retries from 5s on.
    # A replace of Tempo or Loki by `up` takes seconds; 6,000 requests hold 10 minutes at 5,000
    # items/s (an SDK sends 512 at a time), as long as the retries last.
    for name in (exporter_to(collector, "traces"), exporter_to(collector, "logs")):
        exporter = collector["exporters"][name]
        assert exporter["sending_queue"] == {"enabled": True, "num_consumers": 10, "queue_size": 6000,
                                             "storage": "file_storage/queues"}, name
        assert exporter["retry_on_failure"] == {
            "enabled": True, "initial_interval": "1s", "max_interval": "30s", "max_elapsed_time": "10m"}, name
    batch = collector["processors"]["batch"]
    assert batch["send_batch_size"] == batch["send_batch_max_size"] == 4096


def test_what_the_collector_accepts_of_traces_and_logs_is_on_disk_before_the_app_is_told(collector):
    # The batch processor answers the receiver before anything is queued: a collector killed
    # then would lose what the app was told had arrived. Only metrics (pulled, never queued)
    # are batched.
    pipelines = collector["service"]["pipelines"]
    assert "batch" not in pipelines["traces"]["processors"] + pipelines["logs"]["processors"]
    assert pipelines["metrics"]["processors"][-1] == "batch"


def test_collector_queues_on_its_data_volume_so_a_restart_loses_nothing(collector):
    # The extension refuses a directory that does not exist: the volume is mounted there.
    collector_service = SERVICES_BY_NAME["otel-collector"]
    storage = collector["extensions"]["file_storage/queues"]
    assert storage["directory"] == storage["compaction"]["directory"] == collector_service.data_dir
    assert storage["compaction"]["on_rebound"] is True
    assert "file_storage/queues" in collector["service"]["extensions"]


def test_collector_limits_memory_first(collector):
    limiter = collector["processors"]["memory_limiter"]
    assert limiter["check_interval"] == "1s" and limiter["limit_mib"] > limiter["spike_limit_mib"] > 0
    for pipeline in collector["service"]["pipelines"].values():
        assert pipeline["processors"][0] == "memory_limiter"


def largest_request(collector) -> int:
    """The most bytes a request the collector takes from the app can hold, which it passes on whole."""
    protocols = collector["receivers"]["otlp"]["protocols"]
    return max(protocols["grpc"]["max_recv_msg_size_mib"] * 2**20, protocols["http"]["max_request_body_size"])


def test_collector_health_check_is_on_and_published(collector):
    assert collector["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    assert collector["service"]["extensions"][0] == "health_check"
    assert PORTS_BY_NAME["collector_health"].host == 33133


def test_collector_names_only_components_it_defines(collector):
    for pipeline in collector["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(collector[kind])
    used = {kind: {name for p in collector["service"]["pipelines"].values() for name in p[kind]}
            for kind in ("receivers", "processors", "exporters")}
    for kind, names in used.items():
        assert names == set(collector[kind]), f"{kind} defined but unused"


# --- Tempo --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tempo(files):
    return load(files, "tempo", "/etc/tempo/tempo.yaml")


def tempo_retention(tempo) -> str:
    """Block retention: the compactor's (2.x), the backend worker's (3.0)."""
    return (tempo.get("compactor") or tempo["backend_worker"])["compaction"]["block_retention"]


def test_tempo_receives_otlp_and_keeps_traces_seven_days(tempo):
    assert tempo["server"]["http_listen_port"] == 3200
    protocols = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols == {"grpc": {"endpoint": "0.0.0.0:4317", "max_recv_msg_size_mib": 16},
                         "http": {"endpoint": "0.0.0.0:4318"}}
    assert tempo_retention(tempo) == "168h"


def test_tempo_takes_a_developers_load_test_without_discarding(tempo, collector):
    limits = tempo["overrides"]["defaults"]
    # Measured on Tempo 2.3.0 through this collector: 1,500 spans/s for 10s, one span per trace,
    # lost 2,753 of 15,000 (LIVE_TRACES_EXCEEDED) at the default 10,000 live traces, and none
    # with no limit. A trace is live up to trace_idle_period plus a flush check (20s with the
    # defaults, 3s here): at 5,000 traces/s, 150,000 holds either. The collector drops what this
    # refuses.
    assert limits["ingestion"]["max_traces_per_user"] == 150_000
    # Tempo's defaults, stated: 15 MB/s is 5,000 spans/s of 3 KB; the burst must hold the largest
    # message the receiver takes, or such a batch could never pass.
    assert limits["ingestion"]["rate_strategy"] == "local"
    assert limits["ingestion"]["rate_limit_bytes"] == 15_000_000 >= 5_000 * 3_000
    assert limits["ingestion"]["burst_size_bytes"] == 20_000_000 >= 16 * 2**20
    assert limits["global"]["max_bytes_per_trace"] == 5_000_000
    # The largest request the collector takes, passed on whole, fits in one of Tempo's messages.
    receiver_mib = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["max_recv_msg_size_mib"]
    assert largest_request(collector) == 4 * 2**20 <= receiver_mib * 2**20


def test_tempo_stores_everything_on_its_volume(tempo, versions):
    tempo_service = SERVICES_BY_NAME["tempo"]
    storage = tempo["storage"]["trace"]
    assert storage["backend"] == "local"
    paths = [storage["wal"]["path"], storage["local"]["path"], tempo["metrics_generator"]["storage"]["path"]]
    if versions == "current":
        live_store = tempo["live_store"]
        paths += [live_store["wal"]["path"], live_store["shutdown_marker_dir"],
                  tempo["backend_scheduler"]["local_work_path"]]
    for path in paths:
        assert Path(path).is_relative_to(tempo_service.data_dir)


def test_tempo_writes_span_metrics_and_service_graph_to_prometheus_with_exemplars(tempo):
    [remote_write] = tempo["metrics_generator"]["storage"]["remote_write"]
    assert remote_write == {"url": "http://prometheus:9090/api/v1/write", "send_exemplars": True}
    assert tempo["overrides"]["defaults"]["metrics_generator"]["processors"] == ["service-graphs", "span-metrics"]


def test_tempo_is_ready_without_the_default_wait(tempo, versions):
    if versions == "seed":
        assert tempo["ingester"]["lifecycler"]["min_ready_duration"] == "0s"
    else:  # Tempo 3's live-store has no ring to wait for
        assert "ingester" not in tempo and "lifecycler" not in tempo["live_store"]


def test_a_killed_tempo_loses_only_the_last_seconds_of_traces(tempo, versions):
    # Live traces are in memory until idle and checked; killed at 200 spans/s, Tempo 2.3.0 lost
    # 860 of 4,090 acknowledged traces with the defaults (10s, 10s), 40 with these.
    if versions == "seed":
        assert tempo["ingester"]["trace_idle_period"] == "2s" and tempo["ingester"]["flush_check_period"] == "1s"
    else:
        assert tempo["live_store"]["max_trace_idle"] == "2s" and tempo["live_store"]["flush_check_period"] == "1s"


def test_tempo_3_stops_in_seconds_and_reports_nothing(tempo, versions):
    if versions == "current":
        # Its backend worker would otherwise spend 30s of every stop asking a stopped scheduler,
        # and its metrics-generator a minute on a Prometheus that is stopping too.
        assert tempo["backend_worker"]["finish_on_shutdown_timeout"] == "1s"
        assert tempo["metrics_generator"]["storage"]["remote_write_flush_deadline"] == "1s"
        assert tempo["usage_report"] == {"reporting_enabled": False}


# --- Loki ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loki(files):
    return load(files, "loki", "/etc/loki/loki.yaml")


def test_loki_retention_really_deletes(loki):
    assert loki["compactor"]["retention_enabled"] is True
    assert loki["limits_config"]["retention_period"] == "168h"
    [schema] = loki["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    assert schema["index"]["period"] == "24h"  # retention needs the 24h index period


def test_loki_single_binary_on_its_volume_and_ready_quickly(loki):
    assert loki["auth_enabled"] is False and loki["server"]["http_listen_port"] == 3100
    assert loki["common"]["ring"]["kvstore"]["store"] == "inmemory" and loki["common"]["replication_factor"] == 1
    for path in (loki["common"]["path_prefix"], loki["compactor"]["working_directory"],
                 *loki["common"]["storage"]["filesystem"].values()):
        assert Path(path).is_relative_to("/loki")
    assert loki["ingester"]["lifecycler"]["min_ready_duration"] == "0s"


def test_loki_takes_a_developers_load_test_without_refusing(loki, collector):
    limits = loki["limits_config"]
    # 5,000 lines/s of 500 bytes from each log path is 5 MB/s; Loki's defaults (4 MB/s, 6 MB
    # burst, 3 MB/s per stream) would answer 429, which the collector retries until it gives up.
    assert limits["ingestion_rate_mb"] == 16 >= 2 * 5_000 * 500 / 2**20
    assert limits["ingestion_burst_size_mb"] == 32
    assert (limits["per_stream_rate_limit"], limits["per_stream_rate_limit_burst"]) == ("16MB", "32MB")
    assert limits["max_line_size"] == 0  # no line refused for its length
    # The largest collector push (the largest request it takes, passed on whole) passes the burst
    # and the distributor-to-ingester gRPC message limit (4 MiB by default).
    largest_push = largest_request(collector)
    assert largest_push <= limits["ingestion_burst_size_mb"] * 2**20
    assert largest_push <= loki["server"]["grpc_server_max_recv_msg_size"] == 16 * 2**20
    assert loki["server"]["grpc_server_max_send_msg_size"] == 16 * 2**20


def test_a_restart_of_loki_loses_nothing_it_took_in(loki):
    # Measured on Loki 2.9.0 (through the collector, 200 lines/s): a restart after a restart lost
    # every line taken in between, dropped as duplicates by the WAL replay; flushed on shutdown,
    # none; killed, what is younger than a chunk's age and the flush check (1m + 30s).
    assert loki["ingester"]["wal"]["flush_on_shutdown"] is True
    assert loki["ingester"]["max_chunk_age"] == "1m"


def test_loki_queries_skip_the_scheduler_so_ready_means_queries_work(loki):
    # Measured on Loki 2.9.0: with frontend.scheduler_dns_lookup_period at 1s or 2s, /ready said 200
    # in 1.4s and every query then hung forever; at 3s it races the scheduler's own 3s start; at
    # its default 10s /ready takes 10.5s. Without the scheduler (the frontend's own queue, pulled by
    # the querier in the same process) /ready came in 1.2-1.4s and queries answered at once. Do not
    # bring the scheduler or a short lookup period back.
    assert loki["query_scheduler"] == {"use_scheduler_ring": False}
    assert loki["frontend_worker"] == {"frontend_address": f"127.0.0.1:{loki['server']['grpc_listen_port']}"}
    assert "frontend" not in loki


def test_a_switch_of_versions_keeps_what_the_new_releases_can_read():
    seed, current = rendered({"versions": "seed"}), rendered({"versions": "current"})
    # Loki 3.7.6 reads what 2.9.0 stored under the same schema (run: 510 lines of 510 read back).
    assert load(seed, "loki", "/etc/loki/loki.yaml")["schema_config"] == \
        load(current, "loki", "/etc/loki/loki.yaml")["schema_config"]
    for name in ("prometheus", "loki", "otel-collector", "alloy", "grafana"):
        assert SERVICES_BY_NAME[name].at("seed").data_volume == SERVICES_BY_NAME[name].at("current").data_volume
    # Tempo 3.0 reads no block 2.3 wrote (vParquet2), nor 2.3 one of 3.0's (vParquet4): each keeps
    # its own volume, and a switch either way names the traces it leaves there.
    assert SERVICES_BY_NAME["tempo"].at("seed").data_volume != SERVICES_BY_NAME["tempo"].at("current").data_volume
    for switch in (("seed", "current"), ("current", "seed")):
        assert [loss.split(":")[0] for loss in switch_losses(*switch)] == ["tempo"]


# --- Alloy (parsed by Alloy's own parser) -------------------------------------------------------


@pytest.fixture(scope="module")
def alloy(files, tmp_path_factory):
    return alloy_blocks(files["alloy"]["/etc/alloy/config.alloy"], tmp_path_factory.mktemp("alloy"))


def test_alloy_tails_log_files_in_the_mounted_log_dir(alloy):
    assert attributes(alloy[("local.file_match", "app_logs")]) == {"path_targets": [{"__path__": f"{LOG_MOUNT}/*.log"}]}
    source = attributes(alloy[("loki.source.file", "app_logs")])
    assert source == {"targets": {"expr": "local.file_match.app_logs.targets"},
                      "forward_to": {"expr": "[loki.process.pino.receiver]"}}


def test_alloy_parses_pino_json_labels_and_timestamps(alloy):
    pipeline = dict(stages(alloy[("loki.process", "pino")]))
    assert pipeline["stage.json"] == {"expressions": {"level": "", "time": ""}}
    assert pipeline["stage.template"]["source"] == "level"
    assert pipeline["stage.labels"] == {"values": {"level": ""}}
    assert pipeline["stage.static_labels"] == {"values": {"job": "refly-api", "env": "local"}}
    assert pipeline["stage.timestamp"] == {"source": "time", "format": "UnixMs"}
    assert pipeline["stage.label_drop"] == {"values": ["filename"]}
    assert attributes(alloy[("loki.process", "pino")])["forward_to"] == {"expr": "[loki.write.loki.receiver]"}
    assert "traceId" not in repr(pipeline["stage.labels"])  # a label per trace would explode Loki's index


def test_a_pino_line_leaves_alloy_with_the_shared_labels_alone(alloy):
    """loki.source.file labels each line with its file; the OTel path has no such label."""
    pipeline = stages(alloy[("loki.process", "pino")])
    labels = alloy_stream_labels(pipeline, source_file_labels(f"{LOG_MOUNT}/api.log"), {"level": "warn"})
    assert labels == {"job": "refly-api", "env": "local", "level": "warn"}


def test_on_kubernetes_alloy_takes_pushed_lines_into_the_same_pipeline(alloy, tmp_path):
    """Lines posted to loki.source.api's /loki/api/v1/raw carry only its `labels` argument (none:
    lokipush/push_api_server.go handlePlaintext at Alloy v1.5.1), then pass the Pino pipeline."""
    pushed = alloy_blocks(rendered_files("alloy", {"platform": "kubernetes"})["/etc/alloy/config.alloy"], tmp_path)
    source = pushed[("loki.source.api", "app_logs")]
    assert attributes(source) == {"forward_to": {"expr": "[loki.process.pino.receiver]"}}
    [http] = [item for item in source if item.get("block") == "http"]
    assert attributes(http["body"]) == {"listen_address": "0.0.0.0", "listen_port": 3500}
    assert ("loki.source.file", "app_logs") not in pushed and ("local.file_match", "app_logs") not in pushed
    assert pushed[("loki.process", "pino")] == alloy[("loki.process", "pino")]
    labels = alloy_stream_labels(stages(pushed[("loki.process", "pino")]), {}, {"level": "warn"})
    assert labels == {"job": "refly-api", "env": "local", "level": "warn"}


def test_alloy_pushes_to_loki(alloy):
    [endpoint] = [item for item in alloy[("loki.write", "loki")] if item.get("block") == "endpoint"]
    assert attributes(endpoint["body"]) == {"url": "http://loki:3100/loki/api/v1/push"}


def test_every_level_a_logger_writes_is_one_of_the_six_the_otel_path_gives(alloy):
    template = dict(stages(alloy[("loki.process", "pino")]))["stage.template"]["template"]
    numbers, names = [str(number) for number in PINO_LEVELS], list(PINO_LEVELS.values())
    # Python's logging, Go's slog, logrus, zap, Log4j and Logback, in their own spelling.
    spelled = {"TRACE": "trace", "DEBUG": "debug", "Info": "info", "WARN": "warn", "warning": "warn",
               "WARNING": "warn", "ERROR": "error", "err": "error", "CRITICAL": "fatal", "FATAL": "fatal",
               "panic": "fatal"}
    mapped = run_go_template(template, numbers + names + list(spelled))
    assert mapped == names + names + list(spelled.values())
    # One set of values on both log paths: what the collector gives an OTel record's severity.
    assert set(mapped) == set(OTEL_SEVERITY_RANGES)
    # Any other level passes lower-cased; a line without one (not JSON, or no field) gets none,
    # not "<no value>".
    assert run_go_template(template, ["Notice", "", "<absent>"]) == ["notice", "", ""]


# --- Grafana provisioning -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def datasources(files):
    provisioned = load(files, "grafana", "/etc/grafana/provisioning/datasources/trace-stack.yaml")
    assert provisioned["apiVersion"] == 1
    return {source["type"]: source for source in provisioned["datasources"]}


def test_datasources_have_fixed_uids_and_reach_the_services(datasources):
    assert {kind: (s["uid"], s["url"], s["access"]) for kind, s in datasources.items()} == {
        "prometheus": ("prometheus", "http://prometheus:9090", "proxy"),
        "tempo": ("tempo", "http://tempo:3200", "proxy"),
        "loki": ("loki", "http://loki:3100", "proxy"),
    }
    assert [kind for kind, s in datasources.items() if s.get("isDefault")] == ["prometheus"]


def test_every_link_between_datasources_names_a_provisioned_uid(datasources):
    uids = {source["uid"] for source in datasources.values()}

    def linked(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasourceUid":
                    yield value
                else:
                    yield from linked(value)
        elif isinstance(node, list):
            for item in node:
                yield from linked(item)

    links = list(linked([source["jsonData"] for source in datasources.values()]))
    assert len(links) >= 6 and set(links) <= uids


def test_exemplars_link_metrics_to_traces_for_both_label_names(datasources):
    destinations = datasources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert {d["name"]: d["datasourceUid"] for d in destinations} == {"trace_id": "tempo", "traceID": "tempo"}
    assert set(EXEMPLAR_TRACE_ID_LABELS) == {"trace_id", "traceID"}


def test_traces_link_to_the_apps_logs_by_trace_id(datasources, versions):
    to_logs = datasources["tempo"]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "loki" and to_logs["customQuery"] is True
    # On current an OTel record's trace id is Loki's structured metadata, not in its line: one
    # filter after `json` finds both (answered by a real Loki 3.7.6: a Pino line and an OTel
    # record of the same trace).
    assert grafana_expand(to_logs["query"]) == {
        "seed": '{job="refly-api"} |= "${__trace.traceId}"',
        "current": '{job="refly-api"} | json | trace_id="${__trace.traceId}" or traceId="${__trace.traceId}"'}[versions]


def test_traces_link_to_metrics_and_the_service_map(datasources):
    tempo = datasources["tempo"]["jsonData"]
    assert tempo["serviceMap"] == {"datasourceUid": "prometheus"}
    assert tempo["nodeGraph"] == {"enabled": True}
    assert tempo["tracesToMetrics"]["datasourceUid"] == "prometheus"
    for query in tempo["tracesToMetrics"]["queries"]:
        assert "${__tags}" not in query["query"] and "$__tags" in grafana_expand(query["query"])


@pytest.mark.parametrize("line", [
    '{"level":30,"time":1700000000000,"traceId":"%s","msg":"GET /"}' % TRACE_ID,
    '{"level":30,"time":1700000000000,"trace_id":"%s","span_id":"00f067aa0ba902b7","msg":"GET /"}' % TRACE_ID,
    '{"level":"info","trace_id": "%s"}' % TRACE_ID,
    # The collector's loki exporter (its JSON line format).
    '{"body":"GET /","traceid":"%s","spanid":"00f067aa0ba902b7","severity":"INFO"}' % TRACE_ID,
])
def test_log_lines_with_a_trace_id_link_to_tempo(datasources, line):
    [derived, *_] = datasources["loki"]["jsonData"]["derivedFields"]
    assert derived["datasourceUid"] == "tempo" and grafana_expand(derived["url"]) == "${__value.raw}"
    regex = re.compile(derived["matcherRegex"])
    assert regex.groups == 1 and regex.search(line).group(1) == TRACE_ID


def test_a_log_line_without_a_trace_id_links_nowhere(datasources):
    [derived, *_] = datasources["loki"]["jsonData"]["derivedFields"]
    assert not re.search(derived["matcherRegex"], '{"level":30,"msg":"no trace","spanId":"00f067aa0ba902b7"}')


def test_otel_records_link_to_tempo_by_the_trace_id_loki_keeps_beside_them(datasources, versions):
    [_, *by_metadata] = datasources["loki"]["jsonData"]["derivedFields"]
    if versions == "seed":  # the loki exporter writes it into the line
        assert by_metadata == []
    else:
        assert by_metadata == [{"name": "TraceID", "matcherType": "label", "matcherRegex": TRACE_ID_METADATA,
                                "datasourceUid": "tempo", "url": "$${__value.raw}", "urlDisplayLabel": "View trace"}]


def test_dashboards_provider_reads_the_dashboards_folder(files):
    provider_file = load(files, "grafana", "/etc/grafana/provisioning/dashboards/trace-stack.yaml")
    [provider] = provider_file["providers"]
    assert provider["type"] == "file" and provider["folder"] == "trace-stack"
    assert provider["options"]["path"] == GRAFANA_DASHBOARDS_DIR


# --- Settings reach the files -------------------------------------------------------------------


def test_retention_settings_reach_tempo_and_loki():
    files = rendered({"tempoRetention": "720h", "lokiRetention": "30d"})
    assert load(files, "tempo", "/etc/tempo/tempo.yaml")["compactor"]["compaction"]["block_retention"] == "720h"
    assert load(files, "loki", "/etc/loki/loki.yaml")["limits_config"]["retention_period"] == "30d"


def test_port_offset_changes_no_file_inside_the_network(files, versions):
    # Containers talk to each other on their own ports; only the published host ports move.
    assert rendered({"portOffset": "1000", "versions": versions}) == files


def test_the_apps_name_and_env_label_both_log_paths_and_link_traces_to_its_logs(tmp_path):
    files = rendered({"appName": "shop-api", "appEnv": "staging"})
    alloy = alloy_blocks(files["alloy"]["/etc/alloy/config.alloy"], tmp_path)
    assert dict(stages(alloy[("loki.process", "pino")]))["stage.static_labels"] == {
        "values": {"job": "shop-api", "env": "staging"}}
    collector = load(files, "otel-collector", "/etc/otelcol-contrib/config.yaml")
    [resource, _] = collector["processors"]["transform/log_labels"]["log_statements"]
    assert resource["statements"][:2] == ['set(attributes["job"], "shop-api")', 'set(attributes["env"], "staging")']
    datasources = {s["type"]: s for s in load(files, "grafana", "/etc/grafana/provisioning/datasources/trace-stack.yaml")[
        "datasources"]}
    assert grafana_expand(datasources["tempo"]["jsonData"]["tracesToLogsV2"]["query"]) == \
        '{job="shop-api"} |= "${__trace.traceId}"'

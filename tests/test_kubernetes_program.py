"""The real __main__.py on platform kubernetes, under Pulumi mocks: every service's objects, from the
same records the Docker containers come from."""

import pytest

from program.platforms.kubernetes import config_key, port_name
from program.services import PASSWORD_KEY, SERVICES
from program.settings import DEFAULTS, pinned_images
from tests.program import is_secret, run_program
from tests.test_program import EXPECTED_OUTPUTS

SEED_IMAGES = pinned_images("seed")

KUBERNETES = {"platform": "kubernetes"}


@pytest.fixture(scope="module")
def on_kubernetes():
    program = run_program(KUBERNETES)
    assert program.error is None, program.error
    return program


@pytest.fixture(scope="module")
def on_docker():
    program = run_program()
    assert program.error is None, program.error
    return program


def test_only_kubernetes_objects_in_the_stacks_namespace(on_kubernetes):
    assert not [r for r in on_kubernetes.resources if r.type.startswith("docker:")]
    [namespace] = on_kubernetes.kubernetes("core/v1:Namespace").values()
    assert namespace["metadata"]["name"] == "trace-stack-dev"
    for kind in ("apps/v1:Deployment", "core/v1:Service", "core/v1:ConfigMap", "core/v1:PersistentVolumeClaim",
                 "networking.k8s.io/v1:NetworkPolicy"):
        for name, inputs in on_kubernetes.kubernetes(kind).items():
            assert inputs["metadata"]["namespace"] == "trace-stack-dev", (kind, name)
    assert all(r.provider and "trace-stack-kubernetes" in r.provider for r in on_kubernetes.resources
               if r.type.startswith("kubernetes:") and r.type != "pulumi:providers:kubernetes")


def test_every_object_carries_the_stack_and_its_service(on_kubernetes):
    for kind in ("core/v1:Namespace", "apps/v1:Deployment", "core/v1:Service", "core/v1:ConfigMap",
                 "core/v1:PersistentVolumeClaim", "networking.k8s.io/v1:NetworkPolicy"):
        for name, inputs in on_kubernetes.kubernetes(kind).items():
            labels = inputs["metadata"]["labels"]
            assert labels["trace-stack.stack"] == "dev", (kind, name)
            service = name.split("-data")[0].split("-config")[0].split("-service")[0]
            if service in {s.name for s in SERVICES}:
                assert labels["trace-stack.service"] == service, (kind, name)


def test_one_workload_and_one_service_named_after_each_service(on_kubernetes):
    deployments, services = on_kubernetes.kubernetes("apps/v1:Deployment"), on_kubernetes.kubernetes("core/v1:Service")
    assert sorted(d["metadata"]["name"] for d in deployments.values()) == sorted(s.name for s in SERVICES)
    assert sorted(s["metadata"]["name"] for s in services.values()) == sorted(s.name for s in SERVICES)
    for service in SERVICES:
        spec = services[f"{service.name}-service"]["spec"]
        assert spec["selector"] == {"trace-stack.stack": "dev", "trace-stack.service": service.name}
        expected = {port.internal for port in service.ports if "kubernetes" in port.platforms}
        assert {port["port"] for port in spec["ports"]} == expected
        assert all(len(port["name"]) <= 15 and "_" not in port["name"] for port in spec["ports"])
        # Not awaited: the Deployment's wait for a ready pod says the Service has an endpoint.
        assert services[f"{service.name}-service"]["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}


def test_each_pod_runs_what_the_container_runs_on_docker(on_kubernetes, on_docker):
    deployments = on_kubernetes.kubernetes("apps/v1:Deployment")
    for service in SERVICES:
        docker = on_docker.containers[service.name]
        spec = deployments[service.name]["spec"]
        [container] = spec["template"]["spec"]["containers"]
        assert container["image"] == SEED_IMAGES[service.name]
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert container.get("args") == docker.get("command"), service.name
        memory = f"{DEFAULTS[service.memory_key]}Mi"
        assert container["resources"] == {"requests": {"memory": memory}, "limits": {"memory": memory}}
        probe_port = service.port(service.readiness.port).internal
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": service.readiness.path, "port": probe_port}
        assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == docker["destroyGraceSeconds"]
        # One writer per volume: never two pods on one claim during a rollout.
        assert spec["strategy"]["type"] == "Recreate" and spec["replicas"] == 1


def test_pods_run_as_their_own_non_root_user_without_privileges(on_kubernetes):
    for name, deployment in on_kubernetes.kubernetes("apps/v1:Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, name
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["fsGroup"] == context["runAsUser"]


def test_config_files_are_mounted_where_the_service_reads_them(on_kubernetes, on_docker):
    config_maps = on_kubernetes.kubernetes("core/v1:ConfigMap")
    deployments = on_kubernetes.kubernetes("apps/v1:Deployment")
    for service in SERVICES:
        uploads = {upload["file"]: upload["content"] for upload in on_docker.containers[service.name].get("uploads", [])}
        if not uploads:
            continue
        data = config_maps[f"{service.name}-config"]["data"]
        pod = deployments[service.name]["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "config"}
        assert set(mounts) == set(uploads), service.name
        for path, mount in mounts.items():
            assert mount["subPath"] == config_key(path) and mount["readOnly"] is True
            if service.name != "alloy":
                assert data[config_key(path)] == uploads[path]
        [volume] = [v for v in pod["volumes"] if v["name"] == "config"]
        assert volume["configMap"]["name"].startswith(f"trace-stack-{service.name}-config")


def test_alloy_takes_pushed_lines_on_kubernetes_instead_of_files(on_kubernetes):
    config_maps = on_kubernetes.kubernetes("core/v1:ConfigMap")
    [alloy] = config_maps["alloy-config"]["data"].values()
    assert 'loki.source.api "app_logs"' in alloy and "listen_port    = 3500" in alloy
    assert "local.file_match" not in alloy and "forward_to = [loki.process.pino.receiver]" in alloy
    deployment = on_kubernetes.kubernetes("apps/v1:Deployment")["alloy"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {port["containerPort"] for port in container["ports"]} == {12345, 3500}
    assert not [m for m in container["volumeMounts"] if m["mountPath"] == "/var/log/app"]


def test_each_data_volume_is_a_claim_kept_by_down(on_kubernetes):
    claims = on_kubernetes.kubernetes("core/v1:PersistentVolumeClaim")
    assert sorted(claims) == sorted(f"{s.name}-data" for s in SERVICES if s.data_dir)
    for name, claim in claims.items():
        assert claim["metadata"]["name"] == name
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in claim["spec"]
        assert on_kubernetes.options[("kubernetes:core/v1:PersistentVolumeClaim", f"trace-stack-{name}")].retain_on_delete
    assert on_kubernetes.options[("kubernetes:core/v1:Namespace", "trace-stack-namespace")].retain_on_delete
    for service in SERVICES:
        pod = on_kubernetes.kubernetes("apps/v1:Deployment")[service.name]["spec"]["template"]["spec"]
        [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "data"]
        assert mount["mountPath"] == service.data_dir


def test_storage_class_namespace_and_context_are_settings():
    program = run_program({**KUBERNETES, "storageClass": "fast-ssd", "namespace": "alice-obs", "kubeContext": "team"})
    assert program.error is None, program.error
    for claim in program.kubernetes("core/v1:PersistentVolumeClaim").values():
        assert claim["spec"]["storageClassName"] == "fast-ssd"
        assert claim["metadata"]["namespace"] == "alice-obs"
    [provider] = [r for r in program.resources if r.type == "pulumi:providers:kubernetes"]
    assert provider.inputs["context"] == "team"


def test_the_grafana_password_is_a_secret_the_pod_reads(on_kubernetes):
    program = run_program({**KUBERNETES, PASSWORD_KEY: "s3cret"}, secret_keys=(PASSWORD_KEY,))
    assert program.error is None, program.error
    [secret] = program.kubernetes("core/v1:Secret").values()
    assert is_secret(secret["stringData"]) and secret["stringData"]["value"] == {"password": "s3cret"}
    grafana = program.kubernetes("apps/v1:Deployment")["grafana"]["spec"]["template"]["spec"]["containers"][0]
    [password] = [env for env in grafana["env"] if env["name"] == "GF_SECURITY_ADMIN_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "trace-stack-grafana-admin-0a1b2c3d", "key": "password"}
    assert not on_kubernetes.kubernetes("core/v1:Secret")


def test_only_grafana_and_otlp_are_reached_from_outside_the_namespace(on_kubernetes):
    [policy] = on_kubernetes.kubernetes("networking.k8s.io/v1:NetworkPolicy").values()
    inside, outside = policy["spec"]["ingress"]
    assert inside == {"from": [{"podSelector": {}}]}
    assert sorted(port["port"] for port in outside["ports"]) == [3000, 4317, 4318]
    exposed = run_program({**KUBERNETES, "exposeBackends": True})
    [policy] = exposed.kubernetes("networking.k8s.io/v1:NetworkPolicy").values()
    assert policy["spec"]["ingress"][1] == {}


def test_the_outputs_keep_their_names_and_urls(on_kubernetes):
    assert on_kubernetes.outputs == EXPECTED_OUTPUTS


def test_two_stacks_have_two_namespaces():
    alice, bob = run_program(KUBERNETES, stack="alice"), run_program(KUBERNETES, stack="bob")
    names = [next(iter(p.kubernetes("core/v1:Namespace").values()))["metadata"]["name"] for p in (alice, bob)]
    assert names == ["trace-stack-alice", "trace-stack-bob"]


@pytest.mark.parametrize("key, value", [("platform", "k8s"), ("namespace", "Alice_Obs"), ("storageClass", "Fast SSD")])
def test_a_bad_kubernetes_setting_creates_nothing(key, value):
    program = run_program({**KUBERNETES, key: value})
    assert program.error is not None and f"trace-stack:{key} = {value!r} is not allowed" in str(program.error)
    assert not [r for r in program.resources if r.type.startswith(("kubernetes:", "docker:"))]


def test_port_names_and_config_keys():
    assert port_name(next(p for s in SERVICES for p in s.ports if p.name == "collector_otlp_http")) == "otlp-http"
    assert config_key("/etc/grafana/provisioning/datasources/trace-stack.yaml") == \
        "etc_grafana_provisioning_datasources_trace-stack.yaml"

"""A seventh service is one declaration, its template and its two settings: on a copy of the
project with a toy service added so, the component on both platforms, the renderer, `check`,
preflight and the README's tables all take it up with nothing else changed."""

import json
import shutil
import subprocess
import sys
import textwrap

from tests.program import ROOT

TOY = '''
SERVICES = SERVICES + (
    Service(
        name="toy",
        ports=(Port("toy_http", 8080, 38080, output="toy_url"), Port("toy_grpc", 9999)),
        readiness=Readiness("toy_http", "/healthz"),
        build_info=BuildInfo("/version", ("version",)),
        runs_as="65534 (image's)",
        healthcheck_tool="wget",
        data_dir="/var/lib/toy",
        config_files=(ConfigFile("toy.yaml", "/etc/toy/toy.yaml", flag="--config"),),
        depends_on=("loki",),
    ),
)
'''

TOY_SETTINGS = '''
  toyImage:
    type: string
    default: example/toy:1.0
    description: Toy image.
  toyMemoryMiB:
    type: integer
    default: 128
    description: Memory limit of the toy container in MiB.
'''

PROBE = textwrap.dedent('''
    import dataclasses
    import json
    from tests.program import run_program
    from stack.check import PROBES
    from program.ports import published_ports
    from tests.tools import stack_config
    from program.tables import containers_table, services_table

    program = run_program()
    assert program.error is None, program.error
    toy = program.containers["toy"]
    [image] = [r.inputs["name"] for r in program.of_type("remoteImage:RemoteImage") if r.name == "trace-stack-toy-image"]
    on_kubernetes = run_program({"platform": "kubernetes"})
    assert on_kubernetes.error is None, on_kubernetes.error
    print(json.dumps({
        "kubernetes": {kind: on_kubernetes.kubernetes(kind).get(name) for kind, name in (
            ("apps/v1:Deployment", "toy"), ("core/v1:Service", "toy-service"), ("core/v1:ConfigMap", "toy-config"),
            ("core/v1:PersistentVolumeClaim", "toy-data"))},
        "container": {key: toy.get(key) for key in ("name", "command", "memory", "ports", "healthcheck", "volumes",
                                                    "networksAdvanced")},
        "uploads": {u["file"]: u["content"] for u in toy["uploads"]},
        "image": image,
        "output": program.outputs.get("toy_url"),
        "probe": [dataclasses.asdict(p) for p in PROBES if p.service == "toy"],
        "preflight_ports": published_ports(stack_config()),
        "tables": services_table() + containers_table(),
    }))
''')


def test_a_toy_service_is_taken_up_everywhere(tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("venv", ".git", "__pycache__", "Pulumi.*.yaml"))
    services = copy / "program" / "services.py"
    text = services.read_text()
    services.write_text(text.replace("\nSERVICES_BY_NAME =", TOY + "\nSERVICES_BY_NAME =", 1))
    (copy / "configs" / "toy.yaml").write_text(
        "listen: {{ (listen_host ~ ':' ~ port.toy_http) | tojson }}\nlogs: {{ ('http://' ~ host.loki ~ ':' ~ port.loki_http) | tojson }}\n")
    (copy / "Pulumi.yaml").write_text((copy / "Pulumi.yaml").read_text() + TOY_SETTINGS)

    result = subprocess.run([sys.executable, "-c", PROBE], cwd=copy, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    toy = seen["container"]
    assert toy["name"] == "trace-stack-dev-toy" and seen["image"] == "example/toy:1.0" and toy["memory"] == 128
    assert toy["command"] == ["--config=/etc/toy/toy.yaml"]
    assert [(p["internal"], p["external"]) for p in toy["ports"]] == [(8080, 38080)]
    assert toy["healthcheck"]["tests"] == ["CMD", "wget", "--spider", "-q", "http://127.0.0.1:8080/healthz"]
    assert {"volumeName": "trace-stack-dev-toy-data", "containerPath": "/var/lib/toy"} in toy["volumes"]
    assert toy["networksAdvanced"] == [{"name": "trace-stack-dev", "aliases": ["toy"]}]
    assert seen["uploads"] == {"/etc/toy/toy.yaml": 'listen: "0.0.0.0:8080"\nlogs: "http://loki:3100"\n'}
    assert seen["output"] == "http://localhost:38080"
    [probe] = seen["probe"]
    assert (probe["service"], probe["output"], probe["path"], probe["image_key"]) == ("toy", "toy_url", "/healthz", "toyImage")
    assert (probe["build_info"]["path"], probe["build_info"]["version_keys"]) == ("/version", ["version"])
    assert seen["preflight_ports"]["toy_http"] == 38080 and "toy_grpc" not in seen["preflight_ports"]
    assert "| toy | example/toy:1.0 (`toyImage`) | 38080 | `trace-stack-<stack>-toy-data` |" in seen["tables"]
    assert "| toy | 128 (`toyMemoryMiB`) | `wget --spider -q http://127.0.0.1:8080/healthz` |" in seen["tables"]
    kubernetes = seen["kubernetes"]
    pod = kubernetes["apps/v1:Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "example/toy:1.0" and container["args"] == ["--config=/etc/toy/toy.yaml"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert container["resources"]["limits"] == {"memory": "128Mi"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/toy/toy.yaml", "/var/lib/toy"}
    assert {p["port"] for p in kubernetes["core/v1:Service"]["spec"]["ports"]} == {8080, 9999}
    assert list(kubernetes["core/v1:ConfigMap"]["data"].values()) == [seen["uploads"]["/etc/toy/toy.yaml"]]
    assert kubernetes["core/v1:PersistentVolumeClaim"]["metadata"]["name"] == "toy-data"

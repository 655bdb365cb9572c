"""The test cluster's DNS server: A records for Services, nothing else, never forwarding.

    python -m tests.kube_dns --server https://10.88.0.1:6443 --ca CA --token-file F --listen 10.88.0.1

Runs inside the cluster's network namespace, on UDP and TCP port 53 of the node address (the
kubelet's clusterDNS). `<service>.<namespace>.svc.cluster.local` answers the Service's ClusterIP
(or, for a headless Service, its ready endpoints' addresses); a pod's search path makes `tempo`
in its own namespace that name. Every other name is NXDOMAIN (a Service's AAAA is an empty
answer). Services come from a watch of the API, and a name not known yet is looked up directly,
so a Service is resolvable as soon as it exists.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.error
import urllib.request

DOMAIN = "svc.cluster.local"
TTL = 5


class KubeAPI:
    """A minimal client of the Kubernetes API over HTTPS with a bearer token."""

    def __init__(self, server: str, ca: str, token: str):
        self.server = server.rstrip("/")
        self.token = token
        self.context = ssl.create_default_context(cafile=ca)

    def request(self, method: str, path: str, body: dict | None = None, *, timeout: float = 10,
                content_type: str = "application/json"):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json", "Content-Type": content_type})
        return urllib.request.urlopen(request, context=self.context, timeout=timeout)

    def get(self, path: str, *, timeout: float = 10) -> dict | None:
        try:
            with self.request("GET", path, timeout=timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def send(self, method: str, path: str, body: dict, content_type: str = "application/json") -> dict:
        with self.request(method, path, body, content_type=content_type) as response:
            return json.load(response)


class Services:
    """The addresses of every Service, kept up to date by a watch."""

    def __init__(self, api: KubeAPI):
        self.api = api
        self.lock = threading.Lock()
        self.addresses: dict[tuple[str, str], list[str]] = {}

    def _addresses(self, service: dict) -> list[str]:
        spec = service.get("spec", {})
        ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None" and ":" not in ip]
        if ips or spec.get("type") == "ExternalName":
            return ips
        meta = service["metadata"]
        slices = self.api.get(f"/apis/discovery.k8s.io/v1/namespaces/{meta['namespace']}/endpointslices"
                              f"?labelSelector=kubernetes.io/service-name%3D{meta['name']}") or {"items": []}
        return [address for item in slices["items"] if item.get("addressType") == "IPv4"
                for endpoint in item.get("endpoints") or [] if (endpoint.get("conditions") or {}).get("ready", True)
                for address in endpoint.get("addresses", [])]

    def lookup(self, name: str, namespace: str) -> list[str] | None:
        """The addresses of Service name in namespace, or None when there is no such Service. A
        headless Service's (its ready endpoints) are looked up each time."""
        with self.lock:
            known = self.addresses.get((namespace, name))
        if known:
            return known
        service = self.api.get(f"/api/v1/namespaces/{namespace}/services/{name}", timeout=3)
        if service is None:
            return None
        addresses = self._addresses(service)
        if service.get("spec", {}).get("clusterIP") not in (None, "", "None"):
            with self.lock:
                self.addresses[(namespace, name)] = addresses
        return addresses

    def watch(self) -> None:
        while True:
            try:
                listing = self.api.get("/api/v1/services")
                fresh = {}
                for item in listing["items"]:
                    if item["spec"].get("clusterIP") not in (None, "", "None"):
                        fresh[(item["metadata"]["namespace"], item["metadata"]["name"])] = self._addresses(item)
                with self.lock:
                    self.addresses = fresh
                version = listing["metadata"]["resourceVersion"]
                with self.api.request("GET", f"/api/v1/services?watch=1&resourceVersion={version}"
                                             f"&timeoutSeconds=240", timeout=300) as stream:
                    for line in stream:
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            break
                        meta = event["object"]["metadata"]
                        key = (meta["namespace"], meta["name"])
                        headless = event["object"]["spec"].get("clusterIP") in (None, "", "None")
                        if event["type"] == "DELETED" or headless:
                            with self.lock:
                                self.addresses.pop(key, None)
                        else:
                            addresses = self._addresses(event["object"])
                            with self.lock:
                                self.addresses[key] = addresses
            except Exception as error:  # the API restarting, a timeout: list again
                print(f"kube_dns: watch: {error}", file=sys.stderr, flush=True)
                time.sleep(0.5)


def _question(message: bytes) -> tuple[str, int, int, int]:
    """The name, type, class and the end offset of a query's first question."""
    labels, offset = [], 12
    while True:
        length = message[offset]
        if length == 0 or length & 0xC0:
            offset += 1 if length == 0 else 2
            break
        labels.append(message[offset + 1:offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    qtype, qclass = struct.unpack("!HH", message[offset:offset + 4])
    return ".".join(labels).lower(), qtype, qclass, offset + 4


def answer(message: bytes, services: Services) -> bytes | None:
    if len(message) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", message[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    try:
        name, qtype, qclass, end = _question(message)
    except (IndexError, struct.error):
        return struct.pack("!HHHHHH", ident, 0x8001, 0, 0, 0, 0)  # FORMERR
    question = message[12:end]
    addresses = None
    labels = name.rstrip(".").split(".")
    if (qclass == 1 and len(labels) == 5 and ".".join(labels[2:]) == DOMAIN
            and (flags >> 11) & 0xF == 0):
        try:
            addresses = services.lookup(labels[0], labels[1])
        except Exception as error:
            print(f"kube_dns: lookup {name}: {error}", file=sys.stderr, flush=True)
            return struct.pack("!HHHHHH", ident, 0x8182 | (flags & 0x0100), 1, 0, 0, 0) + question  # SERVFAIL
    rcode = 3 if addresses is None else 0
    records = b""
    count = 0
    if addresses and qtype in (1, 255):
        for address in addresses:
            records += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, TTL, 4) + socket.inet_aton(address)
            count += 1
    # QR, AA, RD copied, RA; no recursion is offered but resolvers complain less with RA set.
    out_flags = 0x8400 | (flags & 0x0100) | 0x0080 | rcode
    return struct.pack("!HHHHHH", ident, out_flags, 1, count, 0, 0) + question + records


def serve(services: Services, listen: str, port: int = 53) -> tuple[socketserver.BaseServer, socketserver.BaseServer]:
    class UDPHandler(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            reply = answer(data, services)
            if reply is not None:
                sock.sendto(reply, self.client_address)

    class TCPHandler(socketserver.StreamRequestHandler):
        def handle(self):
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                reply = answer(self.rfile.read(struct.unpack("!H", head)[0]), services)
                if reply is None:
                    return
                self.wfile.write(struct.pack("!H", len(reply)) + reply)

    class UDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
        daemon_threads = True
        allow_reuse_address = True

    class TCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True

    servers = UDP((listen, port), UDPHandler), TCP((listen, port), TCPHandler)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return servers


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=53)
    args = parser.parse_args()
    api = KubeAPI(args.server, args.ca, open(args.token_file).read().strip())
    services = Services(api)
    serve(services, args.listen, args.port)
    services.watch()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A stand-in for `kubectl`: records every call, answers `get` from a JSON file, and for
`port-forward` listens on the local ports it is given (answering each connection with an HTTP 200
that names the service) until it is stopped.

Driven by the JSON file named in FAKE_KUBECTL: {"log": path, "namespace": object or null,
"deployments": [objects], "logs": {"deployment/<name>": text}, "unreachable": bool}.
"""

import json
import os
import signal
import socket
import sys
import threading

spec = json.loads(open(os.environ["FAKE_KUBECTL"]).read())
args = sys.argv[1:]
with open(spec["log"], "a") as log:
    log.write(json.dumps(args) + "\n")
context = args[args.index("--context"):args.index("--context") + 2] if "--context" in args else []
words = [arg for arg in args if not arg.startswith("--") and arg not in context[1:]]

if spec.get("unreachable"):
    print("The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?",
          file=sys.stderr)
    sys.exit(1)
if words[:2] == ["get", "namespace"]:
    if spec.get("namespace") is None:
        print(f'Error from server (NotFound): namespaces "{words[2]}" not found', file=sys.stderr)
        sys.exit(1)
    print(json.dumps(spec["namespace"]))
elif words[:2] == ["get", "deployments"]:
    print(json.dumps({"items": spec.get("deployments", [])}))
elif words[:1] == ["port-forward"]:
    address = args[args.index("--address") + 1]
    service = next(arg for arg in args if arg.startswith("service/"))
    listeners = []
    for pair in args[args.index(service) + 1:]:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, int(pair.split(":")[0])))
        listener.listen()
        listeners.append(listener)

    def serve(listener):
        while True:
            connection, _ = listener.accept()
            body = service.encode()
            connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            connection.close()

    for listener in listeners:
        threading.Thread(target=serve, args=(listener,), daemon=True).start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
elif words[:1] == ["logs"]:
    if words[1] not in spec.get("logs", {}):
        print(f'Error from server (NotFound): deployments.apps "{words[1].split("/")[-1]}" not found', file=sys.stderr)
        sys.exit(1)
    print(spec["logs"][words[1]], end="")
elif words[:1] == ["delete"]:
    pass
else:
    print(f"fake kubectl: unexpected {args}", file=sys.stderr)
    sys.exit(2)

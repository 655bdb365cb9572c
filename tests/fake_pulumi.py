"""A stand-in for the `pulumi` CLI: records every call and answers as the real CLI would.

Driven by a JSON file named in FAKE_PULUMI (written by tests/test_commands.py):
{"log": path, "stacks": [names], "deployed": bool, "config": {...}, "outputs": {...},
 "preview_events"/"up_events": [engine events], "preview_exit": int, "up_exit": int, "destroy_exit": int,
 "install_stderr": text, "up_stderr": text,
 "seconds": {command: how long it takes}}

What the real CLI (3.274.1) also shows here — a missing stack, the JSON of `config`, `stack
output` and `stack export`, a failing `install` or `preview` — the fake says as the real one does:
tests/test_real_cli.py runs both and compares.

Engine events go to the Automation API as the CLI sends them (`--event-log`): the ones the spec
names for a preview or an up, then the summary and the cancel event that end every run.
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cli_outputs import STACK_NOT_FOUND_EXIT, stack_not_found  # noqa: E402 (after the path it needs)


CLOSING_EVENTS = [
    {"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1, "resourceChanges": {}, "PolicyPacks": {}}},
    {"cancelEvent": {}},
]


def send_events(destination, events):
    """Engine events as the CLI sends them: over gRPC to tcp://host:port (CLI > 3.205), else to a file."""
    events = [{"sequence": number, "timestamp": number, **event} for number, event in enumerate(events, start=1)]
    if destination.startswith("tcp://"):
        import grpc

        # pulumirpc.Events/StreamEvents takes a stream of EventRequest {string event = 1;}: each
        # encoded here (field 1, length-delimited), without loading Pulumi's generated modules.
        def event_request(event: dict) -> bytes:
            payload = json.dumps(event).encode()
            return b"\x0a" + _varint(len(payload)) + payload

        with grpc.insecure_channel(destination[len("tcp://"):]) as channel:
            stream = channel.stream_unary("/pulumirpc.Events/StreamEvents", request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)
            stream(iter([event_request(event) for event in events]))
    else:
        with open(destination, "a") as log:
            log.writelines(json.dumps(event) + "\n" for event in events)


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def main(raw_args):
    with open(os.environ["FAKE_PULUMI"]) as spec_file:
        spec = json.load(spec_file)
    args = [arg for arg in raw_args if arg != "--non-interactive"]  # the Automation API's global flag
    with open(spec["log"], "a") as log:
        log.write(json.dumps({"args": args, "raw": raw_args,
                              "passphrase": os.environ.get("PULUMI_CONFIG_PASSPHRASE")}) + "\n")

    stack = args[args.index("--stack") + 1] if "--stack" in args else None
    # As long as the real command takes (bench/up_overhead.py): "up" -> seconds.
    time.sleep(spec.get("seconds", {}).get(args[0] if args else "", 0))
    if args[:1] == ["version"]:
        print("v3.274.1")
        return 0
    if args[:2] in (["stack", "select"], ["stack", "output"], ["stack", "export"]) and stack not in spec["stacks"]:
        print(stack_not_found(stack), file=sys.stderr, end="")
        return STACK_NOT_FOUND_EXIT
    if args[:1] == ["install"] and spec.get("install_stderr"):
        print(spec["install_stderr"], file=sys.stderr, end="")
        return 1
    if args[:2] == ["stack", "init"]:
        spec["stacks"].append(args[2])
        with open(os.environ["FAKE_PULUMI"], "w") as spec_file:
            json.dump(spec, spec_file)
        return 0
    if args[:2] == ["stack", "select"] or args[:1] == ["install"]:
        return 0
    if args[:1] == ["config"]:
        print(json.dumps(spec.get("config", {})))
        return 0
    if args[:2] == ["stack", "output"]:
        print(json.dumps(spec.get("outputs", {}), indent=4))
        return 0
    if args[:2] == ["stack", "export"]:
        deployment = {"manifest": {"time": "2026-11-26T00:00:00Z", "magic": "", "version": "v3.274.1"},
                      "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:fake"}}, "metadata": {}}
        if spec.get("deployed", True):
            deployment["resources"] = [{"urn": f"urn:pulumi:{stack}::trace-stack::pulumi:pulumi:Stack::trace-stack-{stack}",
                                        "custom": False, "type": "pulumi:pulumi:Stack"}]
        print(json.dumps({"version": 3, "deployment": deployment}, indent=4))
        return 0
    if args[:2] == ["stack", "history"]:
        print(json.dumps([{"version": 1, "kind": "update", "startTime": "2026-11-25T00:00:00.000Z",
                           "endTime": "2026-11-25T00:00:09.000Z", "message": "", "environment": {},
                           "config": {}, "result": "succeeded", "resourceChanges": {"create": 19}}]))
        return 0
    if args[:1] in (["up"], ["preview"], ["destroy"]):
        events = spec.get(f"{args[0]}_events", [])
        if "--event-log" in args:
            send_events(args[args.index("--event-log") + 1], events + CLOSING_EVENTS)
        if args[0] == "preview":
            for event in events:
                if "diagnosticEvent" in event:
                    print(event["diagnosticEvent"]["prefix"] + event["diagnosticEvent"]["message"], file=sys.stderr)
            return spec.get("preview_exit", 0)
        if spec.get(f"{args[0]}_stderr"):
            print(spec[f"{args[0]}_stderr"], file=sys.stderr, end="")
            return 1
        print(f"{args[0]}: stack {stack}: done")
        return spec.get(f"{args[0]}_exit", 0)
    print(f"fake pulumi: unexpected call {args}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

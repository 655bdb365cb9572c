"""A stand-in for the `pulumi` CLI: records every call and answers as the real CLI would.

Driven by a JSON file named in FAKE_PULUMI (written by tests/test_commands.py):
{"log": path, "stacks": [names], "config": {...}, "outputs": {...},
 "preview_events": [engine events], "preview_exit": int, "up_exit": int, "destroy_exit": int}

Engine events go to the Automation API as the CLI sends them (`--event-log`): the ones the spec
names for a preview, then the summary and the cancel event that end every run.
"""

import json
import os
import sys


CLOSING_EVENTS = [
    {"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1, "resourceChanges": {}, "PolicyPacks": {}}},
    {"cancelEvent": {}},
]


def send_events(destination, events):
    """Engine events as the CLI sends them: over gRPC to tcp://host:port (CLI > 3.205), else to a file."""
    events = [{"sequence": number, "timestamp": number, **event} for number, event in enumerate(events, start=1)]
    if destination.startswith("tcp://"):
        import grpc
        from pulumi.runtime.proto import events_pb2, events_pb2_grpc

        with grpc.insecure_channel(destination[len("tcp://"):]) as channel:
            events_pb2_grpc.EventsStub(channel).StreamEvents(
                iter([events_pb2.EventRequest(event=json.dumps(event)) for event in events]))
    else:
        with open(destination, "a") as log:
            log.writelines(json.dumps(event) + "\n" for event in events)


def main(raw_args):
    with open(os.environ["FAKE_PULUMI"]) as spec_file:
        spec = json.load(spec_file)
    args = [arg for arg in raw_args if arg != "--non-interactive"]  # the Automation API's global flag
    with open(spec["log"], "a") as log:
        log.write(json.dumps({"args": args, "raw": raw_args,
                              "passphrase": os.environ.get("PULUMI_CONFIG_PASSPHRASE")}) + "\n")

    stack = args[args.index("--stack") + 1] if "--stack" in args else None
    if args[:1] == ["version"]:
        print("v3.272.0")
        return 0
    if args[:2] == ["stack", "select"] and stack not in spec["stacks"]:
        print(f"error: no stack named '{stack}' found", file=sys.stderr)
        return 255
    if args[:2] in (["stack", "select"], ["stack", "init"]) or args[:1] == ["install"]:
        return 0
    if args[:1] == ["config"]:
        print(json.dumps(spec.get("config", {})))
        return 0
    if args[:2] == ["stack", "output"]:
        print(json.dumps(spec.get("outputs", {})))
        return 0
    if args[:2] == ["stack", "history"]:
        print(json.dumps([{"version": 1, "kind": "update", "startTime": "2026-11-25T00:00:00.000Z",
                           "endTime": "2026-11-25T00:00:09.000Z", "message": "", "environment": {},
                           "config": {}, "result": "succeeded", "resourceChanges": {"create": 19}}]))
        return 0
    if args[:1] in (["up"], ["preview"], ["destroy"]):
        events = spec.get("preview_events", []) if args[0] == "preview" else []
        if "--event-log" in args:
            send_events(args[args.index("--event-log") + 1], events + CLOSING_EVENTS)
        if args[0] == "preview":
            for event in events:
                if "diagnosticEvent" in event:
                    print(event["diagnosticEvent"]["prefix"] + event["diagnosticEvent"]["message"], file=sys.stderr)
            return spec.get("preview_exit", 0)
        print(f"{args[0]}: stack {stack}: done")
        return spec.get(f"{args[0]}_exit", 0)
    print(f"fake pulumi: unexpected call {args}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The record processor's own CPU per 1,000 records, apart from the destination server's.

End to end, the local server (moto) is the bottleneck, so a throughput number says little about the
processor. This harness prices the processor alone: it plays the MultiLangDaemon to a real
``replicator-processor`` child over its stdin and stdout, and reads the child's CPU seconds (user + system,
all threads: /proc/PID/stat) between the end of ``initialize`` and the last ``processRecords`` status, so
start-up (imports, clients) is left out.

The feed. ``--records`` DynamoDB Streams adapter records (JSON exactly as the adapter writes one: eventID,
eventName, eventVersion, eventSource, awsRegion, and ``dynamodb`` with Keys, NewImage, OldImage,
SequenceNumber, SizeBytes, StreamViewType and ApproximateCreationDateTime in epoch milliseconds; binary
attribute values as base64, so binary is base64 twice on the wire) of items of about 1 KB with every
attribute type (strings, numbers of up to 38 digits, binary, sets, maps and lists nested, booleans, null).
About 70 % INSERT, 20 % MODIFY and 10 % REMOVE; the MODIFY and REMOVE records name a key written shortly
before, mostly within the same batch, so squash has work. Records go out as the daemon sends them:
``processRecords`` messages of ``--batch`` records (``{"action": "record", "data": base64, "partitionKey",
"sequenceNumber", "subSequenceNumber", "approximateArrivalTimestamp"}``, the fields of KCL's
JsonFriendlyRecord), one JSON line each, after an ``initialize``; each checkpoint the processor asks for is
answered as the daemon answers it (``{"action": "checkpoint", ..., "error": null}``), and the run ends with
``shutdownRequested``. Every message is encoded before the child starts, so the harness's own work does not
compete for the core. Each run writes to a fresh destination table, checked afterwards to hold exactly the
live keys of the feed (DescribeTable's ItemCount).

The baseline, measured the same way in the same run (``--no-baseline`` skips it): a plain loop that does the
least any processor must do with the same feed: read each message line with ``json.loads``, base64-decode
each record's data and ``json.loads`` it, turn the images' base64 binary into bytes, keep the last change per
key (BatchWriteItem refuses a key twice in one request), and put or delete with BatchWriteItem, 25 a request,
with the path's ``writeConcurrency`` requests in flight on a boto3 client configured as the processor's (no
client-side validation). It answers ``status`` and never checkpoints. The ratio processor/baseline is the
processor's overhead over that minimum.

Trees. ``--tree LABEL=DIR`` (repeatable) runs the processor from the source tree DIR (``PYTHONPATH=DIR``),
so a change is measured against the code before it in one run: ``git archive HEAD replicator | tar -x -C
/tmp/before`` gives a tree of the last commit. Runs interleave (baseline, tree 1, tree 2, ... per
repeat), so a drift of the machine spreads over all of them; the summary gives each one's median and
spread (min-max) over ``--repeats``.

``--profile DIR`` adds one run per tree under cProfile, every thread included (the writer's pool threads
serialise the requests), timed by each thread's CPU clock (so a thread waiting for the GIL, a socket or a
lock costs nothing), and writes ``DIR/LABEL.prof`` and the top entries by own time and by cumulative
time. cProfile slows Python-heavy code more than C-heavy code, so it says where to look; the timed runs
say how much a change is worth.

``--shape`` adds, per repeat, a run of the first tree with the path's replica shape set (``changes.shape``):
``SHAPE_SETTINGS``, an exclusion of two attributes and a filter that every item of the feed passes (so the
destination check still holds), which prices the filter's evaluation and the projection per record.

Run: ``.venv/bin/python -m bench.processor [--records 20000] [--repeats 3] [--tree before=/tmp/before]
[--tree after=.] [--profile /tmp/prof]`` (``--endpoint URL`` uses a running local server instead of
starting one).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

SOURCE_REGION = "us-east-1"
KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
ATTRIBUTE_DEFINITIONS = [{"AttributeName": "pk", "AttributeType": "S"},
                         {"AttributeName": "sk", "AttributeType": "N"}]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FIRST_SEQUENCE = 400_000_000_000_000_000_000
ARRIVAL_MS = 1_764_000_000_000

# --- The feed ------------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(("alpha", "bravo", "charlie", "delta", "écho", "foxtrot", "golf", "hotel", "✓"))
                    for _ in range(n))


def _number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return str(rng.randint(-10**6, 10**6))
    if kind < 0.7:
        return f"{rng.randint(0, 10**9)}.{rng.randint(0, 99):02d}"
    if kind < 0.9:
        return str(rng.randint(10**37, 10**38 - 1))  # 38 digits
    return "-0.000000000000000000000000000000000001"


def stream_item(pk: str, sk: int, rev: int, rng: random.Random) -> dict[str, Any]:
    """One item of about 1 KB as stream JSON (binary already base64), every attribute type in it."""
    return {
        "pk": {"S": pk},
        "sk": {"N": str(sk)},
        "rev": {"N": str(rev)},
        "name": {"S": _words(rng, rng.randint(2, 5))},
        "email": {"S": f"{pk}@example.com"},
        "age": {"N": str(rng.randint(18, 99))},
        "balance": {"N": _number(rng)},
        "created": {"N": str(ARRIVAL_MS + rng.randint(0, 10**9))},
        "active": {"BOOL": rng.random() < 0.5},
        "nothing": {"NULL": True},
        "tags": {"SS": sorted({f"tag{rng.randint(0, 50)}" for _ in range(rng.randint(1, 5))})},
        "scores": {"NS": sorted({_number(rng) for _ in range(rng.randint(1, 5))})},
        "avatar": {"B": _b64(rng.randbytes(rng.randint(32, 160)))},
        "thumbs": {"BS": sorted({_b64(rng.randbytes(24)) for _ in range(rng.randint(1, 3))})},
        "address": {"M": {
            "street": {"S": f"{rng.randint(1, 999)} {_words(rng, 2)} street"},
            "city": {"S": rng.choice(("Lisboa", "Zürich", "Osaka", "Lagos", "Lima"))},
            "zip": {"S": f"{rng.randint(10000, 99999)}"},
            "geo": {"M": {"lat": {"N": f"{rng.uniform(-90, 90):.6f}"}, "lon": {"N": f"{rng.uniform(-180, 180):.6f}"}}},
        }},
        "history": {"L": [
            {"M": {"ts": {"N": str(ARRIVAL_MS - i * 1000)}, "action": {"S": rng.choice(("login", "buy", "view"))},
                   "amount": {"N": _number(rng)}, "token": {"B": _b64(rng.randbytes(8))}}}
            for i in range(rng.randint(1, 4))
        ]},
        "flags": {"L": [{"BOOL": True}, {"N": "0"}, {"S": ""}, {"NULL": True}, {"L": []}, {"M": {}}]},
        "notes": {"S": _words(rng, rng.randint(5, 20))},
    }


@dataclass
class Feed:
    messages: list[bytes]
    """Every line the harness sends, newline included: initialize, the processRecords, shutdownRequested."""
    records: int
    live_keys: int
    """Keys that exist after the whole feed (what the destination must hold)."""
    mean_record_bytes: float
    mean_item_bytes: float
    events: dict[str, int]


def make_feed(records: int, batch: int, seed: int = 7) -> Feed:
    rng = random.Random(seed)
    live: dict[tuple[str, int], dict[str, Any]] = {}
    recent: list[tuple[str, int]] = []  # keys written lately: MODIFY and REMOVE pick from them
    next_key = 0
    events = {"INSERT": 0, "MODIFY": 0, "REMOVE": 0}
    kcl_records: list[dict[str, Any]] = []
    record_bytes = item_bytes = items = 0
    for index in range(records):
        sequence = str(FIRST_SEQUENCE + index * 17)
        roll = rng.random()
        candidates = [k for k in recent[-300:] if k in live] if roll < 0.3 else []
        if candidates:
            key = rng.choice(candidates)
            event = "MODIFY" if roll < 0.2 else "REMOVE"
        else:
            key = (f"user-{next_key:08d}", next_key % 7)
            next_key += 1
            event = "INSERT"
        events[event] += 1
        old = live.get(key)
        body: dict[str, Any] = {"Keys": {"pk": {"S": key[0]}, "sk": {"N": str(key[1])}}}
        if event == "REMOVE":
            del live[key]
        else:
            new = stream_item(key[0], key[1], index, rng)
            live[key] = new
            body["NewImage"] = new
            recent.append(key)
        if old is not None:
            body["OldImage"] = old
        body.update(SequenceNumber=sequence, SizeBytes=0, StreamViewType="NEW_AND_OLD_IMAGES",
                    ApproximateCreationDateTime=ARRIVAL_MS + index)
        body["SizeBytes"] = len(json.dumps({k: body[k] for k in ("Keys", "NewImage", "OldImage") if k in body}))
        record = {"eventID": f"{index:032x}", "eventName": event, "eventVersion": "1.1",
                  "eventSource": "aws:dynamodb", "awsRegion": SOURCE_REGION, "dynamodb": body}
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        record_bytes += len(data)
        if "NewImage" in body:
            item_bytes += len(json.dumps(body["NewImage"], separators=(",", ":")))
            items += 1
        kcl_records.append({"action": "record", "data": _b64(data), "partitionKey": key[0],
                            "sequenceNumber": sequence, "subSequenceNumber": 0,
                            "approximateArrivalTimestamp": ARRIVAL_MS + index})
    lines = [{"action": "initialize", "shardId": "shardId-00000001764000000000-00000001",
              "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}]
    lines += [{"action": "processRecords", "records": kcl_records[i : i + batch], "millisBehindLatest": 0}
              for i in range(0, records, batch)]
    lines.append({"action": "shutdownRequested"})
    return Feed([(json.dumps(line, separators=(",", ":")) + "\n").encode("ascii") for line in lines], records,
                len(live), record_bytes / records, item_bytes / max(items, 1), events)


# --- Playing the daemon --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process (every thread), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15 of the line


def next_message(out: BinaryIO) -> dict[str, Any]:
    """The child's next protocol message (it writes blank lines around each)."""
    while True:
        line = out.readline()
        if not line:
            raise RuntimeError("the child closed its stdout")
        if line.strip():
            return json.loads(line)


@dataclass
class Run:
    label: str
    cpu_s: float
    wall_s: float
    total_cpu_s: float
    """CPU of the whole child, start-up and shutdown included (wait4)."""
    checkpoints: int


def play(label: str, argv: list[str], env: dict[str, str], feed: Feed, log: Path) -> Run:
    with open(log, "ab") as err:
        child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                                 cwd=log.parent)
    assert child.stdin is not None and child.stdout is not None
    checkpoints = 0
    started_cpu = started_wall = 0.0
    ended_cpu = ended_wall = 0.0
    try:
        for index, line in enumerate(feed.messages):
            child.stdin.write(line)
            child.stdin.flush()
            while True:
                message = next_message(child.stdout)
                if message["action"] == "checkpoint":
                    checkpoints += 1
                    answer = {"action": "checkpoint", "sequenceNumber": message.get("sequenceNumber"),
                              "subSequenceNumber": message.get("subSequenceNumber"), "error": None}
                    child.stdin.write((json.dumps(answer) + "\n").encode("ascii"))
                    child.stdin.flush()
                    continue
                if message != {"action": "status", "responseFor": json.loads(line)["action"]}:
                    raise RuntimeError(f"{label}: unexpected answer {message}; see {log}")
                break
            if index == 0:
                started_cpu, started_wall = cpu_seconds(child.pid), time.monotonic()
            if index == len(feed.messages) - 2:  # the last processRecords is durable
                ended_cpu, ended_wall = cpu_seconds(child.pid), time.monotonic()
        child.stdin.close()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"{label}: the child exited with {child.returncode}; see {log}")
    finally:
        if child.returncode is None:
            child.kill()
            child.wait()
    return Run(label, ended_cpu - started_cpu, ended_wall - started_wall, usage.ru_utime + usage.ru_stime, checkpoints)


# --- The baseline child ---------------------------------------------------------------------------------------


def _bytes(value: dict[str, Any]) -> dict[str, Any]:
    (tag, inner), = value.items()
    if tag == "B":
        return {"B": base64.b64decode(inner)}
    if tag == "BS":
        return {"BS": [base64.b64decode(b) for b in inner]}
    if tag == "M":
        return {"M": {k: _bytes(v) for k, v in inner.items()}}
    if tag == "L":
        return {"L": [_bytes(v) for v in inner]}
    return value


def baseline_child() -> None:
    """The least a processor must do per message (see the module's doc); speaks just enough protocol."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    table, endpoint, concurrency = os.environ["BENCH_TABLE"], os.environ["BENCH_ENDPOINT"], int(os.environ["BENCH_CONCURRENCY"])
    client = boto3.session.Session().client("dynamodb", region_name=SOURCE_REGION, endpoint_url=endpoint, config=Config(
        retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=concurrency * 2,
        parameter_validation=False))
    pool = ThreadPoolExecutor(concurrency)

    def write(requests: list[dict[str, Any]]) -> None:
        while requests:
            requests = client.batch_write_item(RequestItems={table: requests}).get("UnprocessedItems", {}).get(table, [])

    out = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        message = json.loads(line)
        if message["action"] == "processRecords":
            last: dict[tuple[str, str], dict[str, Any]] = {}
            for kcl_record in message["records"]:
                body = json.loads(base64.b64decode(kcl_record["data"]))["dynamodb"]
                keys = body["Keys"]
                key = (keys["pk"]["S"], keys["sk"]["N"])
                last.pop(key, None)
                last[key] = ({"PutRequest": {"Item": {k: _bytes(v) for k, v in body["NewImage"].items()}}}
                             if "NewImage" in body else {"DeleteRequest": {"Key": keys}})
            requests = list(last.values())
            for future in [pool.submit(write, requests[i : i + 25]) for i in range(0, len(requests), 25)]:
                future.result()
        out.write(json.dumps({"action": "status", "responseFor": message["action"]}) + "\n")
    pool.shutdown()


# --- Profiling every thread -------------------------------------------------------------------------------------

PROFILED_MAIN = """
import cProfile, pstats, sys, threading, time
out = sys.argv[1]
profiles = []
thread_run = threading.Thread.run
def run(self):
    profile = cProfile.Profile(time.thread_time)
    profiles.append(profile)
    profile.enable()
    try:
        thread_run(self)
    finally:
        profile.disable()
threading.Thread.run = run
from replicator.kcl.processor import main
profile = cProfile.Profile(time.thread_time)
profile.enable()
try:
    main()
finally:
    profile.disable()
    stats = pstats.Stats(profile)
    for other in profiles:  # the pool's threads still wait for work: take what they finished, not their waits
        other.snapshot_stats()
        stats.add(type("Finished", (), {"stats": other.stats, "create_stats": lambda self: None})())
    stats.dump_stats(out)
"""


def print_profile(path: Path, records: int, top: int) -> None:
    import io
    import pstats

    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(str(path), stream=text).sort_stats(order).print_stats(top)
        lines = text.getvalue().splitlines()
        start = next(i for i, l in enumerate(lines) if l.lstrip().startswith("ncalls"))
        print(f"\n{path.stem}: top {top} by {order} ({records} records)")
        print("\n".join(lines[start : start + top + 1]))


# --- The run ---------------------------------------------------------------------------------------------------


SHAPE_SETTINGS = {"exclude_attributes": "email,avatar", "filter": "age >= `18` && (active || !active)"}
"""A shape every feed item passes (ages are 18 to 99), so that the whole feed is still written."""


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.processor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write-concurrency", type=int, default=8)
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR",
                        help="run the processor from this source tree (repeatable; default: this one)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="also profile one run per tree into DIR")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--shape", action="store_true", help="also run the first tree with SHAPE_SETTINGS")
    parser.add_argument("--endpoint", help="a running local server (default: start one)")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()) / "bench-processor")
    args = parser.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.tree] or [("this", str(Path(__file__).resolve().parents[1]))]

    from replicator.kcl.config import ReplicationPath
    from replicator.local.server import LocalServer, local_client, use_local_credentials

    use_local_credentials()
    started = time.monotonic()
    feed = make_feed(args.records, args.batch)
    print(f"feed: {feed.records} records in {len(feed.messages) - 2} messages ({feed.events}), "
          f"{feed.live_keys} keys live at the end; a record's JSON {feed.mean_record_bytes:.0f} B, a new image "
          f"{feed.mean_item_bytes:.0f} B, a processRecords line {sum(map(len, feed.messages)) / (len(feed.messages) - 2) / 1e6:.2f} MB; "
          f"built in {time.monotonic() - started:.1f} s")
    args.logs.mkdir(parents=True, exist_ok=True)
    server = None if args.endpoint else LocalServer(log_path=args.logs / "server.log").start()
    endpoint = args.endpoint or server.endpoint  # type: ignore[union-attr]
    client = local_client(endpoint, region=SOURCE_REGION)
    counter = iter(range(10**6))

    def one(label: str, tree: str | None, profile: Path | None = None, settings: dict[str, str] | None = None) -> Run:
        table = f"bench-processor-{os.getpid()}-{next(counter)}"
        client.create_table(TableName=table, KeySchema=KEY_SCHEMA, AttributeDefinitions=ATTRIBUTE_DEFINITIONS,
                            BillingMode="PAY_PER_REQUEST")
        env = {**os.environ, "BENCH_TABLE": table, "BENCH_ENDPOINT": endpoint,
               "BENCH_CONCURRENCY": str(args.write_concurrency)}
        log = args.logs / f"{label}.log"
        if tree is None:
            argv = [sys.executable, "-P", "-c", "from bench.processor import baseline_child; baseline_child()"]
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
        else:
            properties = args.logs / f"{table}.properties"
            ReplicationPath(source_region=SOURCE_REGION, source_table="bench-source", destination_region=SOURCE_REGION,
                            destination_table=table, destination_endpoint=endpoint,
                            write_concurrency=args.write_concurrency, dont_publish_cloudwatch=True,
                            **(settings or {})).write_properties(properties)
            env.update(PYTHONPATH=str(Path(tree).resolve()), REPLICATOR_PROPERTIES=str(properties),
                       REPLICATOR_STREAM_VIEW="NEW_AND_OLD_IMAGES")
            code = "from replicator.kcl.processor import main; main()"
            # -P: the child's sys.path starts with PYTHONPATH (the tree), not with its working directory
            argv = [sys.executable, "-P", "-c", *((PROFILED_MAIN, str(profile)) if profile else (code,))]
        try:
            run = play(label, argv, env, feed, log)
            held = int(client.describe_table(TableName=table)["Table"]["ItemCount"])
            if held != feed.live_keys:
                raise RuntimeError(f"{label}: the destination holds {held} items, the feed leaves {feed.live_keys}")
        finally:
            client.delete_table(TableName=table)
        per_k = 1000 / feed.records
        print(f"  {label:<12} cpu {run.cpu_s * 1000 * per_k:7.1f} ms/1k records   wall {run.wall_s * 1000 * per_k:7.1f} "
              f"ms/1k   (whole child {run.total_cpu_s:.2f} s cpu, {run.checkpoints} checkpoints)", flush=True)
        return run

    for label, tree in trees:  # the child must import the tree's replicator, not an installed one
        found = subprocess.run([sys.executable, "-P", "-c", "import replicator; print(replicator.__file__)"],
                               env={**os.environ, "PYTHONPATH": str(Path(tree).resolve())}, cwd=args.logs,
                               capture_output=True, text=True, check=True).stdout.strip()
        if not Path(found).resolve().is_relative_to(Path(tree).resolve()):
            raise SystemExit(f"{label}: the child imports {found}, not the tree {tree}")
        print(f"{label}: {found}")
    runs: dict[str, list[Run]] = {}
    try:
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1}/{args.repeats}")
            if args.baseline:
                runs.setdefault("baseline", []).append(one("baseline", None))
            for label, tree in trees:
                runs.setdefault(label, []).append(one(label, tree))
            if args.shape:
                runs.setdefault("shaped", []).append(one("shaped", trees[0][1], settings=SHAPE_SETTINGS))
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            for label, tree in trees:
                one(f"{label}-profiled", tree, args.profile / f"{label}.prof")
    finally:
        if server:
            server.stop()

    per_k = 1000 / feed.records
    base = statistics.median(r.cpu_s for r in runs["baseline"]) if runs.get("baseline") else None
    print(f"\nCPU of the child per 1,000 records (median, min-max over {args.repeats}); "
          f"wall is the destination's pace as much as the child's")
    print("x baseline: the median over repeats of the run's CPU over the baseline's of the same repeat")
    print(f"{'run':<12} {'cpu ms/1k':>10} {'spread':>15} {'wall ms/1k':>11} {'x baseline':>11} {'spread':>11}")
    for label, rs in runs.items():
        cpu = sorted(r.cpu_s * 1000 * per_k for r in rs)
        wall = statistics.median(r.wall_s * 1000 * per_k for r in rs)
        ratio = spread = "-"
        if base:
            ratios = sorted(r.cpu_s / b.cpu_s for r, b in zip(rs, runs["baseline"]))
            ratio, spread = f"{statistics.median(ratios):.2f}", f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
        print(f"{label:<12} {statistics.median(cpu):10.1f} {f'{cpu[0]:.1f}-{cpu[-1]:.1f}':>15} {wall:11.1f} "
              f"{ratio:>11} {spread:>11}")
    if args.profile:
        for label, _ in trees:
            print_profile(args.profile / f"{label}.prof", feed.records, args.top)


if __name__ == "__main__":
    main()

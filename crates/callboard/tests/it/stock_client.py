#!/usr/bin/env python3
"""A stock Kafka client from outside the project reads a Callboard topic.

Reads every message of TOPIC with confluent-kafka (a consumer group, from the earliest offset),
checks the CloudEvents structured-mode content type and validates each message against the JSON
Schema in schema/events/ named by its `type`. Prints one JSON object: counts per event type,
number of distinct subjects per type, and the list of problems (empty when all is well).
"""
import argparse
import json
import pathlib
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from jsonschema import Draft202012Validator
from referencing import Registry, Resource


def registry(schemas: pathlib.Path) -> Registry:
    resources = []
    for path in schemas.glob("*.json"):
        contents = json.loads(path.read_text())
        resources.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--schemas", required=True, type=pathlib.Path)
    parser.add_argument("--expect", type=int, required=True, help="number of messages to read")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()

    reg = registry(args.schemas)
    validators = {}
    for path in args.schemas.glob("*.json"):
        schema = json.loads(path.read_text())
        event_type = schema.get("properties", {}).get("type", {}).get("const")
        if event_type:
            validators[event_type] = Draft202012Validator(schema, registry=reg)

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"stock-client-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    counts, subjects, problems, seen = {}, {}, [], 0
    deadline = time.time() + args.timeout
    while seen < args.expect and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error():
            problems.append(f"consumer error: {message.error()}")
            continue
        seen += 1
        headers = dict(message.headers() or [])
        if headers.get("content-type") != b"application/cloudevents+json":
            problems.append(f"offset {message.offset()}: content-type header is {headers.get('content-type')!r}")
        try:
            event = json.loads(message.value())
        except ValueError as e:
            problems.append(f"offset {message.offset()}: not JSON: {e}")
            continue
        validator = validators.get(event.get("type"))
        if validator is None:
            problems.append(f"offset {message.offset()}: no schema for type {event.get('type')!r}")
            continue
        for error in validator.iter_errors(event):
            problems.append(f"{event.get('type')} {event.get('subject')}: {error.message} at {list(error.absolute_path)}")
        if message.key().decode() != event.get("subject"):
            problems.append(f"offset {message.offset()}: key {message.key()!r} differs from subject {event.get('subject')!r}")
        counts[event["type"]] = counts.get(event["type"], 0) + 1
        subjects.setdefault(event["type"], set()).add(event["subject"])
    consumer.close()
    if seen < args.expect:
        problems.append(f"read only {seen} of {args.expect} messages")
    print(json.dumps({
        "read": seen,
        "counts": counts,
        "distinctSubjects": {k: len(v) for k, v in subjects.items()},
        "problems": problems[:50],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

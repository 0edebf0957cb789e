"""The command line talks to the adapters only (issue 18, item 5): a boto3 client is built for an
adapter and handed to it, never called from ``cli/``."""

import ast
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("s3", "dynamodb", "scheduler", "cloudformation", "sesv2", "secretsmanager")
# Methods boto3 adds to every client, and to S3's, beside the API operations.
ADDED = {"get_paginator", "get_waiter", "can_paginate", "generate_presigned_url", "close"}
S3_ADDED = {
    "upload_file",
    "upload_fileobj",
    "download_file",
    "download_fileobj",
    "copy",
    "generate_presigned_post",
}


def client_methods() -> set[str]:
    session = boto3.session.Session(
        region_name="eu-central-1", aws_access_key_id="unused", aws_secret_access_key="unused"
    )
    names = ADDED | S3_ADDED
    for service in SERVICES:
        names |= set(session.client(service).meta.method_to_api_mapping)  # type: ignore[call-overload]
    return names


def raw_calls(source: str, name: str, methods: set[str]) -> list[str]:
    """Calls of a client method by name, and clients that are not handed straight to an adapter."""
    tree = ast.parse(source)
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr in methods:
            found.append(f"{name}:{node.lineno}: .{node.func.attr}(...)")
        if isinstance(node.func, ast.Name) and node.func.id == "aws_client":
            parent = parents.get(id(node))
            if not (isinstance(parent, ast.Call) and node in parent.args):
                found.append(f"{name}:{node.lineno}: a client kept or called, not given to an adapter")
    return found


def test_no_module_of_the_command_line_calls_a_boto3_client() -> None:
    methods = client_methods()
    assert {"get_object", "put_object", "get_schedule", "put_item", "describe_stacks"} <= methods

    found = [
        call
        for path in sorted((ROOT / "cli").rglob("*.py"))
        for call in raw_calls(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), methods)
    ]

    assert found == []
    # what cli/message.py did before: seen
    before = 's3 = aws_client("s3")\nbody = s3.get_object(Bucket=b, Key=k)\nS3Archive(b, aws_client("s3"))\n'
    assert raw_calls(before, "old.py", methods) == [
        "old.py:1: a client kept or called, not given to an adapter",
        "old.py:2: .get_object(...)",
    ]

"""AWS resources of the local stack, created in moto from ``template.yaml``'s own definitions.

The tables get the key schema, billing mode, stream and TTL that the SAM template declares, so a
test can never pass against a table shape that production does not have (DESIGN §2).
"""

from __future__ import annotations

import copy
import functools
import json
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import yaml
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
REGION = "eu-central-1"
ACCESS_KEY = "testing"


@dataclass(frozen=True)
class StackNames:
    """Physical names of the local resources (CloudFormation would generate them in AWS)."""

    channels_table: str = "lettershop-channels"
    state_table: str = "lettershop-state"
    scripts_bucket: str = "lettershop-scripts"
    archive_bucket: str = "lettershop-archive"
    schedule_group: str = "lettershop-channels"


# --------------------------------------------------------------- the template


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]  # no PyYAML stubs
    """A YAML loader that reads CloudFormation short-form tags (!Ref, !Sub, !GetAtt, ...)."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    key = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    return {key: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The SAM template as plain data; short-form tags become their long ``Fn::`` forms.

    Returns a fresh copy each time (parsed once per file version: tests reset often).
    """
    stat = path.stat()
    return copy.deepcopy(_parse_template(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _parse_template(path: Path, _mtime_ns: int, _size: int) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    return data


def table_definition(logical_id: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """``create_table`` keyword arguments (less the name) for a table resource of the template."""
    template = template if template is not None else load_template()
    resource = template["Resources"][logical_id]
    if resource.get("Type") != "AWS::DynamoDB::Table":
        raise ValueError(f"{logical_id} is not an AWS::DynamoDB::Table")
    props = resource["Properties"]
    kwargs: dict[str, Any] = {
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if kwargs["BillingMode"] == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = props["ProvisionedThroughput"]
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if index_kind in props:
            kwargs[index_kind] = props[index_kind]
    stream = props.get("StreamSpecification")
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = props.get("SSESpecification")
    if sse and sse.get("SSEEnabled"):
        kwargs["SSESpecification"] = {"Enabled": True}
    return kwargs


# ------------------------------------------------------------------- clients


@functools.lru_cache(maxsize=64)
def client(service: str, endpoint_url: str, region: str = REGION) -> Any:
    """A (cached) boto3 client for the local endpoint with the stack's fixed test credentials."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=ACCESS_KEY,
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
    )


def _exists(err: ClientError, *codes: str) -> bool:
    return err.response.get("Error", {}).get("Code") in codes


def create_resources(endpoint_url: str, names: StackNames | None = None) -> None:
    """Create the stack's tables, buckets and schedule group in moto (idempotent)."""
    names = names or StackNames()
    template = load_template()
    ddb = client("dynamodb", endpoint_url)
    tables = (("ChannelsTable", names.channels_table), ("StateTable", names.state_table))
    for logical_id, table_name in tables:
        try:
            ddb.create_table(TableName=table_name, **table_definition(logical_id, template))
        except ClientError as err:
            if not _exists(err, "ResourceInUseException"):
                raise
            continue  # already there (and already configured)
        ddb.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1})
        ttl = template["Resources"][logical_id]["Properties"].get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            # Recorded only: moto never expires items (DESIGN §9).
            ddb.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )

    s3 = client("s3", endpoint_url)
    for bucket in (names.scripts_bucket, names.archive_bucket):
        try:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        except ClientError as err:
            if not _exists(err, "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    scheduler = client("scheduler", endpoint_url)
    try:
        scheduler.create_schedule_group(Name=names.schedule_group)
    except ClientError as err:
        if not _exists(err, "ConflictException"):
            raise


# ------------------------------------------------------------------- helpers

_serializer = TypeSerializer()


def _to_dynamo_value(value: Any) -> Any:
    """Python values as boto3 wants them: floats/ints → Decimal, recursively."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo_value(v) for v in value]
    return value


def to_item(item: dict[str, Any]) -> dict[str, Any]:
    """A plain dict as a DynamoDB typed item (``{"S": ...}``, ``{"N": ...}``, ...)."""
    return {key: _serializer.serialize(_to_dynamo_value(value)) for key, value in item.items()}


def put_channel(endpoint_url: str, table: str, item: dict[str, Any]) -> None:
    """Write a channel item as a person would in the console (plain values, numbers as N)."""
    client("dynamodb", endpoint_url).put_item(TableName=table, Item=to_item(item))


def delete_channel(endpoint_url: str, table: str, channel_id: str) -> None:
    client("dynamodb", endpoint_url).delete_item(TableName=table, Key={"channel_id": {"S": channel_id}})


def put_secret(endpoint_url: str, name: str, value: str | dict[str, Any]) -> str:
    """Create (or overwrite) a secret; a dict is stored as JSON. Returns the secret's ARN."""
    text = value if isinstance(value, str) else json.dumps(value)
    sm = client("secretsmanager", endpoint_url)
    try:
        arn: str = sm.create_secret(Name=name, SecretString=text)["ARN"]
    except ClientError as err:
        if not _exists(err, "ResourceExistsException"):
            raise
        arn = sm.put_secret_value(SecretId=name, SecretString=text)["ARN"]
    return arn


def verify_ses_identity(endpoint_url: str, address: str) -> None:
    """Make *address* (or a domain) a verified SES identity, so SES accepts it as sender."""
    try:
        client("sesv2", endpoint_url).create_email_identity(EmailIdentity=address)
    except ClientError as err:
        if not _exists(err, "AlreadyExistsException"):
            raise


def put_object(endpoint_url: str, bucket: str, key: str, body: bytes | str) -> None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    client("s3", endpoint_url).put_object(Bucket=bucket, Key=key, Body=data)


def list_keys(endpoint_url: str, bucket: str, prefix: str = "") -> list[str]:
    """Every object key under *prefix*, sorted."""
    paginator = client("s3", endpoint_url).get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def get_object(endpoint_url: str, bucket: str, key: str) -> bytes:
    body: bytes = client("s3", endpoint_url).get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def deploy_outputs(endpoint_url: str, stack_name: str, outputs: dict[str, str]) -> None:
    """A CloudFormation stack in moto with these outputs, as ``sam deploy`` would leave one."""
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto does not model the placeholder resource
        client("cloudformation", endpoint_url).create_stack(
            StackName=stack_name, TemplateBody=json.dumps(template)
        )

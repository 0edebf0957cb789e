"""The operator's command line, ``lettershop``, against the real local stack (Dovecot, aiosmtpd, moto).

Every command runs in-process through Typer's runner with the environment the functions have
(``LETTERSHOP_*``, ``AWS_ENDPOINT_URL`` pointing at moto server), as an operator's shell would.
"""

import json
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from app.root import WARM
from cli.main import app
from devstack import aws
from devstack.invoke import SENDER_ADDRESS, invoke_poll, load_event, store_channel, store_oauth_channel
from devstack.samples import partner_mail
from devstack.stack import LocalStack

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"
STRANGER = "orders@stranger.example"


def lettershop(*args: str) -> Result:
    result = runner.invoke(app, list(args), env={"POWERTOOLS_METRICS_DISABLED": "true"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(autouse=True)
def cold_status() -> None:
    WARM.statuses.clear()


def write_json(path: Path, item: dict[str, Any]) -> Path:
    path.write_text(json.dumps(item, indent=2))
    return path


def mailbox_files(stack: LocalStack, user: str) -> dict[str, bytes]:
    """Every message file of the user's Maildir by its unique name, with its flags (``:2,<flags>``).

    Which of ``new/`` or ``cur/`` holds it is left out: Dovecot moves new mail to ``cur/`` at any
    login (it is no longer "recent"), whatever the client does. Contents and flags must not change.
    """
    maildir = stack.dovecot.maildir(user)
    return {
        path.name.removesuffix(":2,"): path.read_bytes()
        for folder in ("new", "cur")
        for path in sorted((maildir / folder).iterdir())
    }


def export_of(raw: bytes) -> str:
    reply = message_from_bytes(raw, policy=policy.default)
    assert isinstance(reply, EmailMessage)
    [attachment] = list(reply.iter_attachments())
    data = attachment.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data.decode("utf-8")


def state_items(stack: LocalStack) -> list[dict[str, Any]]:
    client = aws.client("dynamodb", stack.endpoint_url)
    items = client.scan(TableName=stack.names.state_table, ConsistentRead=True)["Items"]
    return sorted(items, key=lambda item: item["pk"]["S"])


def archive_objects(stack: LocalStack) -> dict[str, bytes]:
    bucket = stack.names.archive_bucket
    return {
        key: aws.get_object(stack.endpoint_url, bucket, key)
        for key in aws.list_keys(stack.endpoint_url, bucket, "")
    }


# ------------------------------------------------------------- the README walkthrough


def deploy_stack_outputs(stack: LocalStack, name: str) -> None:
    """A CloudFormation stack in moto whose outputs name the local resources, as a deploy would."""
    outputs = {
        "ChannelsTableName": stack.names.channels_table,
        "StateTableName": stack.names.state_table,
        "ScriptsBucketName": stack.names.scripts_bucket,
        "ArchiveBucketName": stack.names.archive_bucket,
        "ScheduleGroupName": stack.names.schedule_group,
    }
    aws.deploy_outputs(stack.endpoint_url, name, outputs)


def readme_commands() -> set[str]:
    """The ``lettershop`` commands of the README's "Configure a channel" section, without --stack."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Configure a channel") :]
    found = re.findall(r"lettershop (?:--stack \S+ )?((?:channel|poll|message|script)[^\n`#(;>]*)", section)
    return {" ".join(command.split()).rstrip(":.,") for command in found}


def test_readme_walkthrough_example_validate_put_check_dry_run_activate(
    stack: LocalStack, mailbox: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README "Configure a channel": every command of it, in its order, with --stack as written."""
    deploy_stack_outputs(stack, "lettershop")
    for name in ("CHANNELS_TABLE", "STATE_TABLE", "SCRIPTS_BUCKET", "ARCHIVE_BUCKET", "SCHEDULE_GROUP"):
        monkeypatch.delenv(f"LETTERSHOP_{name}", raising=False)
    ran: set[str] = set()

    def run(*args: str) -> Result:
        ran.add(" ".join(Path(arg).name if "/" in arg else arg for arg in args))
        return lettershop("--stack", "lettershop", *args)

    user, password = mailbox
    aws.put_secret(stack.endpoint_url, "lettershop/acme/pop3", {"password": password})
    aws.put_secret(stack.endpoint_url, "lettershop/acme/smtp", stack.smtp_password)

    example = run("channel", "example")
    assert example.exit_code == 0, example.output
    item = json.loads(example.stdout)
    assert item["active"] is False
    item |= {
        "pop3_host": stack.dovecot.host,
        "pop3_port": stack.dovecot.pop3s_port,
        "pop3_username": user,
        "smtp_host": stack.smtp.host,
        "smtp_port": stack.smtp.port,
        "smtp_username": stack.smtp_user,
        "sender_address": SENDER_ADDRESS,
        "allowed_senders": ["partner.example"],
        "require_authenticated_sender": False,
        "trusted_authserv_ids": [],
    }
    acme = write_json(tmp_path / "acme.json", item)

    validated = run("channel", "validate", str(acme))
    assert validated.exit_code == 0, validated.output
    assert "channel acme is valid" in validated.stdout
    assert "require_authenticated_sender is false" in validated.stderr

    put = run("channel", "put", str(acme))
    assert put.exit_code == 0, put.output
    assert "channel acme created" in put.stdout

    check = run("channel", "check", "acme")
    assert check.exit_code == 0, check.output
    assert "POP3: logged in as" in check.stdout
    assert "0 message(s) waiting" in check.stdout
    assert f"AUTH as {stack.smtp_user} ok" in check.stdout
    assert "every check passed" in check.stdout
    assert stack.smtp.received == []

    stack.dovecot.deliver(user, partner_mail())
    dry = run("poll", "acme", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "orders.csv" in dry.stdout
    assert "2 row(s) accepted, 1 rejected" in dry.stdout
    assert "would end: ok" in dry.stdout
    assert len(stack.dovecot.mailbox(user)) == 1

    inactive = run("poll", "acme")
    assert inactive.exit_code == 0, inactive.output
    assert "poll ended: inactive" in inactive.stdout

    write_json(acme, item | {"active": True})
    activated = run("channel", "put", str(acme))
    assert activated.exit_code == 0, activated.output
    assert "channel acme replaced" in activated.stdout
    assert "active: its schedule is enabled" in activated.stdout

    polled = run("poll", "acme")
    assert polled.exit_code == 0, polled.output
    assert "poll ended: ok; seen 1, recognized 1, processed 1" in polled.stdout
    [mail] = stack.smtp.wait_for(1)
    assert mail.rcpt_tos == ["orders@partner.example"]
    assert stack.dovecot.mailbox(user) == []

    listed = run("channel", "list")
    assert listed.exit_code == 0, listed.output
    assert "acme" in listed.stdout
    assert "ok: 1 processed" in listed.stdout
    assert "none" in listed.stdout  # no schedule yet: the sync function is not running here
    shown = run("channel", "show", "acme")
    assert shown.exit_code == 0, shown.output
    assert "last outcome: ok: 1 processed" in shown.stdout

    assert readme_commands() <= ran, "a README command is not exercised by this test"


# -------------------------------------------------------------------------- validate


def test_validate_reports_every_one_of_three_errors(stack: LocalStack, tmp_path: Path) -> None:
    item = {
        "channel_id": "acme",
        "pop3_host": "pop.acme-mail.example",
        "pop3_port": 99999,
        "pop3_username": "lettershop@acme-mail.example",
        "pop3_password_secret": "lettershop/acme/pop3",
        "sender_address": "not an address",
        "smtp_host": "smtp.operator.example",
        "subject_keyword": "LetterShop",
        "allowed_sender": ["orders@acme.example"],
    }
    result = lettershop("channel", "validate", str(write_json(tmp_path / "bad.json", item)))

    assert result.exit_code == 1
    assert "3 problem(s)" in result.stdout
    assert "pop3_port:" in result.stdout
    assert "sender_address:" in result.stdout
    assert "allowed_sender: Extra inputs are not permitted" in result.stdout

    refused = lettershop("channel", "put", str(tmp_path / "bad.json"))
    assert refused.exit_code == 1
    assert "nothing written" in refused.stdout
    table = aws.client("dynamodb", stack.endpoint_url).scan(TableName=stack.names.channels_table)
    assert table["Items"] == []

    aws.put_channel(stack.endpoint_url, stack.names.channels_table, item)
    stored = lettershop("channel", "validate", "--id", "acme")
    assert stored.exit_code == 1
    assert "3 problem(s)" in stored.stdout


def test_validate_warns_about_nobody_allowed_and_plain_pop3(tmp_path: Path) -> None:
    item = json.loads(lettershop("channel", "example").stdout)
    item |= {"allowed_senders": [], "pop3_security": "none", "pop3_port": 110}
    result = lettershop("channel", "validate", str(write_json(tmp_path / "acme.json", item)))

    assert result.exit_code == 0, result.output
    assert "allowed_senders is empty: nobody can send" in result.stderr
    assert "pop3_security is none" in result.stderr


def test_put_refuses_an_id_with_blanks_around_it_and_writes_nothing(
    stack: LocalStack, tmp_path: Path
) -> None:
    # Given the channel acme in the table
    item = json.loads(lettershop("channel", "example").stdout)
    assert lettershop("channel", "put", str(write_json(tmp_path / "acme.json", item))).exit_code == 0
    # When an operator puts an item whose id is "acme " (a blank after it), or " acme"
    for padded in ("acme ", " acme", "acme\t"):
        refused = lettershop(
            "channel", "put", str(write_json(tmp_path / "padded.json", item | {"channel_id": padded}))
        )
        # Then it is refused, naming the blanks, and nothing is written: acme stays the one item
        assert refused.exit_code == 1, refused.output
        assert "channel_id: " in refused.stdout
        assert "blank" in refused.stdout
        assert "nothing written" in refused.stdout
        assert "replaced" not in refused.stdout
    table = aws.client("dynamodb", stack.endpoint_url).scan(TableName=stack.names.channels_table)
    assert [stored["channel_id"] for stored in table["Items"]] == [{"S": "acme"}]


# ----------------------------------------------------------------------------- check


def test_check_names_a_wrong_pop3_password(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox)
    aws.put_secret(stack.endpoint_url, "lettershop/acme/pop3", {"password": "wrong"})

    result = lettershop("channel", "check", "acme")

    assert result.exit_code == 1
    assert "FAIL POP3: POP3 login of" in result.stdout
    assert "fix: check pop3_username and the password stored in lettershop/acme/pop3" in result.stdout
    assert "ok   SMTP:" in result.stdout
    assert "1 check(s) of channel acme failed" in result.stderr


def test_check_names_an_untrusted_certificate(
    stack: LocalStack, mailbox: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store_channel(stack, mailbox)
    monkeypatch.delenv("SSL_CERT_FILE")  # the stack's own CA is not trusted any more

    result = lettershop("channel", "check", "acme")

    assert result.exit_code == 1
    assert "FAIL POP3:" in result.stdout
    assert "certificate verify failed" in result.stdout
    assert "certificate is not trusted" in result.stdout


def test_check_names_a_refused_smtp_login(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox)
    aws.put_secret(stack.endpoint_url, "lettershop/acme/smtp", "not-the-password")

    result = lettershop("channel", "check", "acme")

    assert result.exit_code == 1
    assert "ok   POP3:" in result.stdout
    assert "FAIL SMTP:" in result.stdout
    assert "refused the login of lettershop-relay" in result.stdout
    assert "fix: check smtp_username and the password stored in lettershop/acme/smtp" in result.stdout
    assert stack.smtp.received == []


def test_check_of_an_oauth_channel_obtains_a_token_and_logs_in_with_it(stack: LocalStack) -> None:
    box = stack.new_oauth_mailbox()
    store_oauth_channel(stack, box)

    result = lettershop("channel", "check", "acme")

    assert result.exit_code == 0, result.stdout
    assert "ok   OAuth token: microsoft token for client " + box.client_id in result.stdout
    assert f"ok   POP3: logged in as {box.user} with an OAuth 2.0 token (XOAUTH2)" in result.stdout
    assert f"AUTH XOAUTH2 as {box.user} ok" in result.stdout
    assert stack.oauth_smtp.received == []


def test_check_names_a_refused_oauth_client_secret_and_tries_no_login(stack: LocalStack) -> None:
    box = stack.new_oauth_mailbox()
    item = store_oauth_channel(stack, box)
    aws.put_secret(stack.endpoint_url, item["oauth_secret"], "not-the-client-secret")

    result = lettershop("channel", "check", "acme")

    assert result.exit_code == 1
    assert "FAIL OAuth token:" in result.stdout
    assert "invalid_client" in result.stdout
    assert "fix: correct oauth_client_id, oauth_secret" in result.stdout
    assert "skip POP3: not tried" in result.stdout
    assert "skip SMTP: not tried" in result.stdout


def test_check_names_a_missing_script_and_passes_once_it_is_uploaded(
    stack: LocalStack, mailbox: tuple[str, str], tmp_path: Path
) -> None:
    store_channel(stack, mailbox, prescript="to_canonical.py")

    missing = lettershop("channel", "check", "acme")

    assert missing.exit_code == 1
    assert "FAIL prescript to_canonical.py: the standard script 'to_canonical.py' does not exist" in (
        missing.stdout
    )
    assert "fix: upload it: lettershop script put to_canonical.py" in missing.stdout

    script = tmp_path / "to_canonical.py"
    script.write_text("import os\n")
    assert lettershop("script", "put", str(script)).exit_code == 0
    fixed = lettershop("channel", "check", "acme")
    assert fixed.exit_code == 0, fixed.output
    assert "ok   prescript to_canonical.py" in fixed.stdout


def test_check_of_an_ses_channel_looks_at_the_identity(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox, smtp="ses")

    result = lettershop("channel", "check", "acme")

    assert result.exit_code == 0, result.output
    assert f"SES identity {SENDER_ADDRESS} is verified for sending" in result.stdout


# --------------------------------------------------------------------------- dry run


def test_dry_run_changes_nothing_byte_for_byte(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    user = mailbox[0]
    store_channel(stack, mailbox)
    stack.dovecot.deliver(user, partner_mail())
    stack.dovecot.deliver(user, partner_mail(sender=STRANGER))
    stack.dovecot.deliver(user, partner_mail(subject="Lunch on Friday?", attachments=()))
    # a real poll first, so the shipment counter exists and has a value to keep
    aws.client("dynamodb", stack.endpoint_url).put_item(
        TableName=stack.names.state_table, Item={"pk": {"S": "counter#s10"}, "value": {"N": "41"}}
    )
    before = (mailbox_files(stack, user), state_items(stack), archive_objects(stack))

    result = lettershop("poll", "acme", "--dry-run")

    assert result.exit_code == 0, result.output
    assert (mailbox_files(stack, user), state_items(stack), archive_objects(stack)) == before
    assert stack.smtp.received == []
    out = result.stdout
    assert "processed" in out
    assert "2 row(s) accepted, 1 rejected (R-1003:" in out
    assert "quarantined without reply: sender" in out
    assert "not a LetterShop message: left on the server untouched" in out
    assert "--- reply to message 1 (not sent) ---" in out
    assert "would end: ok; seen 3, recognized 2, processed 1, failed 0, rejected 1" in out

    real = invoke_poll(load_event("poll-channel.json", channel_id="acme"))
    assert (real["processed"], real["rejected"]) == (1, 1)


def test_a_dry_run_names_the_key_a_real_poll_archives_the_reply_under(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    """One rule builds the archive's keys (``domain.archive_keys``): a processed message's reply goes
    to ``exports/<channel>/<sha256>/``, in the dry run's report as in the real poll's archive; only
    the file name, the time the poll took the message, differs from poll to poll."""
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail())

    dry = lettershop("poll", "acme", "--dry-run")
    real = lettershop("poll", "acme")

    assert dry.exit_code == 0, dry.output
    assert real.exit_code == 0, real.output
    [reported] = re.findall(r"a poll would archive it as (\S+)", dry.stdout)
    [archived] = aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "exports/acme/")
    [inbound] = aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "inbound/acme/")
    digest = inbound.rsplit("/", 1)[1].removesuffix(".eml")
    instant = r"/\d{8}T\d{6}\.\d{6}Z\.eml"
    assert re.fullmatch(f"exports/acme/{digest}{instant}", reported), reported
    assert re.fullmatch(f"exports/acme/{digest}{instant}", archived), archived


def test_dry_run_of_an_invalid_channel_lists_its_problems(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    store_channel(stack, mailbox, pop3_port=0)

    result = lettershop("poll", "acme", "--dry-run")

    assert result.exit_code == 1
    assert "pop3_port:" in result.stderr


def test_a_poll_that_failed_on_a_rotated_password_reads_it_afresh_next_time(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    """``lettershop poll`` ends a poll as the function does (``service.poll.poll_ended``): after a
    failure that names a setting the cached secrets are forgotten, and the status is recorded."""
    _, right = mailbox
    store_channel(stack, mailbox)
    aws.put_secret(stack.endpoint_url, "lettershop/acme/pop3", {"password": "rotated-away"})
    failed = lettershop("poll", "acme")
    assert failed.exit_code == 1
    assert "setting to fix: pop3_username" in failed.stdout

    aws.put_secret(stack.endpoint_url, "lettershop/acme/pop3", {"password": right})
    again = lettershop("poll", "acme")

    assert again.exit_code == 0, again.stdout + again.stderr
    assert "poll ended: ok" in again.stdout
    [row] = [line for line in lettershop("channel", "list").stdout.splitlines() if "│ acme " in line]
    assert [cell.strip() for cell in row.split("│")][6] == "ok"  # the last outcome recorded


def test_verbose_shows_the_service_log_on_stderr_and_restores_it(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    from service.telemetry import logger

    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail(sender=STRANGER))
    level = logger.log_level

    result = lettershop("--verbose", "poll", "acme", "--dry-run")

    assert result.exit_code == 0, result.output
    assert '"message":"message rejected: sender orders@stranger.example' in result.stderr
    assert logger.log_level == level


# ----------------------------------------------------------------------------- replay


def test_replay_of_a_quarantined_message_answers_it_once(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail(sender=STRANGER))
    assert invoke_poll(load_event("poll-channel.json", channel_id="acme"))["rejected"] == 1
    listed = lettershop("message", "list", "acme", "--quarantined")
    assert listed.exit_code == 0, listed.output
    [key] = [
        k
        for k in aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "quarantine/acme/")
        if k.endswith(".eml")
    ]
    assert key in listed.stdout
    assert "is not allowed" in listed.stdout or "sender" in listed.stdout
    # the operator allows the sender, then replays the message
    store_channel(stack, mailbox, allowed_senders=["partner.example", STRANGER])

    first = lettershop("message", "replay", key)

    assert first.exit_code == 0, first.output
    assert "processed" in first.stdout
    assert f"reply sent to {STRANGER}" in first.stdout
    [mail] = stack.smtp.wait_for(1)
    assert mail.rcpt_tos == [STRANGER]

    inbound = lettershop("message", "list", "acme")
    assert inbound.exit_code == 0, inbound.output
    assert f"inbound/acme/{key.split('/', 2)[2]}" in inbound.stdout  # archived like new mail

    second = lettershop("message", "replay", key)

    assert second.exit_code == 1
    assert f"answered before: outcome processed, reply to {STRANGER}" in second.stdout
    assert "--force answers it again" in second.stderr
    assert len(stack.smtp.received) == 1

    forced = lettershop("message", "replay", key, "--force")

    assert forced.exit_code == 0, forced.output
    assert "answered before: outcome processed" in forced.stdout
    assert "Subject: Re: LetterShop import" in forced.stdout
    first_reply, second_reply = stack.smtp.wait_for(2)
    assert export_of(second_reply.data) == export_of(first_reply.data)  # the same shipment ids
    assert ";ACCEPTED;LA" in export_of(first_reply.data)


def answered_once(stack: LocalStack, mailbox: tuple[str, str]) -> tuple[str, bytes]:
    """A partner's message answered by a real poll: its inbound key and the reply as sent."""
    store_channel(stack, mailbox)
    stack.dovecot.deliver(mailbox[0], partner_mail())
    assert invoke_poll(load_event("poll-channel.json", channel_id="acme"))["processed"] == 1
    [inbound] = aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "inbound/acme/")
    [mail] = stack.smtp.wait_for(1)
    return inbound, mail.data


def state_item(stack: LocalStack, pk: str) -> dict[str, Any] | None:
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )
    item: dict[str, Any] | None = answer.get("Item")
    return item


def test_replay_of_an_answered_message_the_ledger_forgot_needs_force(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    inbound, first = answered_once(stack, mailbox)
    digest = inbound.rsplit("/", 1)[1].removesuffix(".eml")
    # 90 days later: the ledger entry has expired (TTL), the archive still holds message and reply
    aws.client("dynamodb", stack.endpoint_url).delete_item(
        TableName=stack.names.state_table, Key={"pk": {"S": f"ledger#acme#{digest}"}}
    )
    counter = state_item(stack, "counter#s10")

    refused = lettershop("message", "replay", inbound)

    assert refused.exit_code == 1
    assert "answered before: outcome processed, reply to orders@partner.example, stored as exports/acme/" in (
        refused.stdout
    )
    assert str(message_from_bytes(first, policy=policy.default)["Message-ID"]).strip() in refused.stdout
    assert "--force answers it again" in refused.stderr
    assert len(stack.smtp.received) == 1
    assert state_item(stack, "counter#s10") == counter  # no shipment id issued
    assert state_item(stack, f"ledger#acme#{digest}") is None

    forced = lettershop("message", "replay", inbound, "--force")

    assert forced.exit_code == 0, forced.output
    assert "the ledger no longer knows it" in forced.stderr
    assert len(stack.smtp.wait_for(2)) == 2


def test_a_replay_keeps_the_first_reply_and_message_list_shows_each(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    inbound, first = answered_once(stack, mailbox)
    [first_key] = aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "exports/acme/")

    forced = lettershop("message", "replay", inbound, "--force")  # the same day

    assert forced.exit_code == 0, forced.output
    second = stack.smtp.wait_for(2)[1].data
    keys = aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "exports/acme/")
    assert len(keys) == 2
    [second_key] = [key for key in keys if key != first_key]
    assert aws.get_object(stack.endpoint_url, stack.names.archive_bucket, first_key) == first
    assert aws.get_object(stack.endpoint_url, stack.names.archive_bucket, second_key) == second
    assert first != second  # its own Message-ID and Date
    assert export_of(first) == export_of(second)  # the same shipment ids
    listed = lettershop("message", "list", "acme")
    assert listed.exit_code == 0, listed.output
    assert first_key in listed.stdout
    assert second_key in listed.stdout
    assert "2 reply(ies)" in listed.stdout


def test_a_replay_leaves_the_channels_mailbox_memory_as_it_was(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    user = mailbox[0]
    store_channel(stack, mailbox)
    stack.dovecot.deliver(user, partner_mail(subject="Lunch on Friday?", attachments=()))  # foreign
    stack.dovecot.deliver(user, partner_mail())
    assert invoke_poll(load_event("poll-channel.json", channel_id="acme"))["processed"] == 1
    aws.client("dynamodb", stack.endpoint_url).update_item(
        TableName=stack.names.state_table,
        Key={"pk": {"S": "mailbox#acme"}},
        UpdateExpression="SET failures = :failures",
        ExpressionAttributeValues={":failures": {"M": {"broken-uid": {"N": "2"}}}},
    )
    memory = state_item(stack, "mailbox#acme")
    assert memory is not None
    assert len(memory["foreign"]["B"]) == 6  # the foreign message's fingerprint
    [inbound] = aws.list_keys(stack.endpoint_url, stack.names.archive_bucket, "inbound/acme/")

    replayed = lettershop("message", "replay", inbound, "--force")

    assert replayed.exit_code == 0, replayed.output
    assert state_item(stack, "mailbox#acme") == memory


def test_replay_refuses_a_key_that_is_no_archived_message(stack: LocalStack) -> None:
    result = lettershop("message", "replay", "exports/acme/2026/11/27/x/orders_export.csv")

    assert result.exit_code == 1
    assert "is not a raw message of the archive" in result.stderr


# ----------------------------------------------------------------------------- scripts


def test_script_test_shows_a_timeout(tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text("import time\nprint('starting', flush=True)\ntime.sleep(30)\n")
    sample = tmp_path / "orders.csv"
    sample.write_text("reference;name\nR-1;Anna\n")

    result = lettershop("script", "test", str(script), str(sample), "--timeout", "1")

    assert result.exit_code == 1
    assert "timed out: did not finish within 1 s and was stopped" in result.stdout
    assert "starting" in result.stdout


def test_script_test_shows_exit_code_output_and_the_resulting_file(tmp_path: Path) -> None:
    script = tmp_path / "upper.py"
    script.write_text(
        "import os, sys\n"
        "path = os.environ['LETTERSHOP_FILE']\n"
        "data = open(path).read()\n"
        "open(path, 'w').write(data.upper())\n"
        "print('partner', os.environ['LETTERSHOP_PARTNER_ID'])\n"
        "print('careful', file=sys.stderr)\n"
    )
    sample = tmp_path / "orders.csv"
    sample.write_text("reference;name\nr-1;anna\n")

    result = lettershop("script", "test", str(script), str(sample), "--partner", "alpina")

    assert result.exit_code == 0, result.output
    assert "exit code 0" in result.stdout
    assert "partner alpina" in result.stdout
    assert "careful" in result.stdout
    assert "REFERENCE;NAME\nR-1;ANNA" in result.stdout


def test_script_put_checks_syntax_then_uploads_and_get_downloads(stack: LocalStack, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def nope(:\n")
    refused = lettershop("script", "put", str(broken))
    assert refused.exit_code == 1
    assert "does not compile" in refused.stderr
    assert aws.list_keys(stack.endpoint_url, stack.names.scripts_bucket, "") == []

    good = tmp_path / "stamp.py"
    good.write_text("print('hello')\n")
    put = lettershop("script", "put", str(good), "--partner", "alpina")
    assert put.exit_code == 0, put.output
    assert aws.list_keys(stack.endpoint_url, stack.names.scripts_bucket, "") == ["partners/alpina/stamp.py"]

    got = lettershop("script", "get", "stamp.py", "--partner", "alpina")
    assert got.exit_code == 0, got.output
    assert got.stdout == "print('hello')\n"
    missing = lettershop("script", "get", "stamp.py")
    assert missing.exit_code == 1
    assert "the standard script 'stamp.py' does not exist" in missing.stderr


# --------------------------------------------------------------------------- the stack


def test_without_a_stack_the_command_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LETTERSHOP_CHANNELS_TABLE", raising=False)

    result = lettershop("channel", "list")

    assert result.exit_code == 1
    assert "pass --stack NAME, or set LETTERSHOP_CHANNELS_TABLE" in result.stderr
    assert "Traceback" not in result.output

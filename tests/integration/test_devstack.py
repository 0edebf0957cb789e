"""The local stack itself: real Dovecot, aiosmtpd and moto behave as the rest of the tests assume."""

from __future__ import annotations

import os
import poplib
import smtplib
import socket
import ssl
import threading
import time
from pathlib import Path

import boto3
import pytest

from devstack import aws
from devstack.dovecot import Dovecot, DovecotError
from devstack.proxy import TcpProxy
from devstack.stack import LocalStack
from devstack.tls import TlsFiles, free_port

pytestmark = pytest.mark.integration


def _raw(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    msgid = subject.replace(" ", "-")
    return (
        "From: orders@partner.example\r\n"
        "To: lettershop@operator.example\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{msgid}@partner.example>\r\n"
        "\r\n"
    ).encode() + body


def _pop3s(stack: LocalStack, user: str, password: str) -> poplib.POP3_SSL:
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    client = poplib.POP3_SSL(stack.host, stack.dovecot.pop3s_port, context=context, timeout=10)
    client.user(user)
    client.pass_(password)
    return client


# ------------------------------------------------------------------------ POP3


def test_pop3s_login_with_verified_certificate(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    user, password = mailbox
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    client = poplib.POP3_SSL(stack.host, stack.dovecot.pop3s_port, context=context, timeout=10)
    try:
        assert isinstance(client.sock, ssl.SSLSocket)
        cert = client.sock.getpeercert()
        assert cert is not None
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
        assert client.user(user).startswith(b"+OK")
        assert client.pass_(password).startswith(b"+OK")
        assert client.stat() == (0, 0)
    finally:
        client.quit()


def test_pop3s_is_refused_without_the_ca(stack: LocalStack) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, but trusts nothing
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL(stack.host, stack.dovecot.pop3s_port, context=context, timeout=10)


def test_ssl_cert_file_makes_the_default_context_trust_the_stack(stack: LocalStack) -> None:
    # The handler passes no CA of its own: OpenSSL's SSL_CERT_FILE (DESIGN §8) must be enough.
    assert os.environ["SSL_CERT_FILE"] == str(stack.ca_file)
    client = poplib.POP3_SSL(
        stack.host, stack.dovecot.pop3s_port, context=ssl.create_default_context(), timeout=10
    )
    client.quit()


def test_stls_on_the_plain_port(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    user, password = mailbox
    client = poplib.POP3(stack.host, stack.dovecot.pop3_port, timeout=10)
    try:
        assert "STLS" in client.capa()
        client.stls(ssl.create_default_context(cafile=str(stack.ca_file)))
        assert isinstance(client.sock, ssl.SSLSocket)
        client.user(user)
        client.pass_(password)
        assert client.stat() == (0, 0)
    finally:
        client.quit()


def test_wrong_password_fails_fast_and_does_not_slow_later_logins(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    user, password = mailbox
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    # With anvil's auth penalty on, the 2nd and 3rd failure would wait 2 s and 4 s.
    for _attempt in range(3):
        client = poplib.POP3_SSL(stack.host, stack.dovecot.pop3s_port, context=context, timeout=10)
        client.user(user)
        started = time.monotonic()
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.pass_("not-" + password)
        assert time.monotonic() - started < 1.0
        client.quit()
    started = time.monotonic()
    _pop3s(stack, user, password).quit()
    assert time.monotonic() - started < 1.0


def test_deliver_then_retr_returns_the_same_bytes(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    user, password = mailbox
    first = _raw("first", b"line one\r\n.a line that starts with a dot\r\n")
    second = _raw("second", "8-bit: Grüsse aus Zürich\r\n".encode("cp1252"))
    names = [stack.dovecot.deliver(user, first), stack.dovecot.deliver(user, second)]
    assert len(set(names)) == 2
    assert stack.dovecot.mailbox(user) == [first, second]

    client = _pop3s(stack, user, password)
    try:
        _resp, listing, _octets = client.list()
        assert [int(line.split()[1]) for line in listing] == [len(first), len(second)]
        for number, expected in ((1, first), (2, second)):
            _resp, lines, _octets = client.retr(number)
            assert b"\r\n".join(lines) + b"\r\n" == expected
    finally:
        client.quit()


def test_dele_and_quit_remove_the_message(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    user, password = mailbox
    keep, drop = _raw("keep"), _raw("drop")
    stack.dovecot.deliver(user, drop)
    stack.dovecot.deliver(user, keep)

    client = _pop3s(stack, user, password)
    client.dele(1)
    assert len(stack.dovecot.mailbox(user)) == 2  # nothing happens before QUIT
    client.quit()
    assert stack.dovecot.mailbox(user) == [keep]


def test_delivery_while_a_session_is_open_is_seen_by_the_next_session(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    user, password = mailbox
    client = _pop3s(stack, user, password)
    stack.dovecot.deliver(user, _raw("late"))
    client.quit()
    client = _pop3s(stack, user, password)
    assert client.stat()[0] == 1
    client.quit()


def test_mailboxes_are_private_to_each_test(stack: LocalStack) -> None:
    (user_a, _pw_a), (user_b, password_b) = stack.new_mailbox(), stack.new_mailbox()
    assert user_a != user_b
    stack.dovecot.deliver(user_a, _raw("for a"))
    client = _pop3s(stack, user_b, password_b)
    assert client.stat() == (0, 0)
    client.quit()


def test_dovecot_stop_leaves_no_process_and_no_folder(tmp_path: Path) -> None:
    server = Dovecot(tmp_path)
    server.start()
    root = server.root
    assert root is not None
    pid = int((root / "run" / "master.pid").read_text())
    server.stop()
    assert not root.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # idempotent


def test_dovecot_start_failure_carries_the_log(tmp_path: Path) -> None:
    class Broken(Dovecot):
        def _config(self, tls: TlsFiles) -> str:
            return super()._config(tls) + "no_such_setting_for_the_test = 1\n"

    server = Broken(tmp_path)
    with pytest.raises(DovecotError, match="no_such_setting_for_the_test"):
        server.start()
    assert server.root is None
    assert not server.running


# ------------------------------------------------------------------------ SMTP


def test_smtp_starttls_auth_delivery_is_recorded(stack: LocalStack) -> None:
    raw = _raw("reply")
    with smtplib.SMTP(stack.host, stack.smtp.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=ssl.create_default_context(cafile=str(stack.ca_file)))
        client.ehlo()
        client.login(stack.smtp_user, stack.smtp_password)
        client.sendmail("lettershop@operator.example", ["orders@partner.example"], raw)

    [mail] = stack.smtp.wait_for(1)
    assert mail.mail_from == "lettershop@operator.example"
    assert mail.rcpt_tos == ["orders@partner.example"]
    assert mail.data == raw
    assert mail.authenticated_user == stack.smtp_user
    assert mail.tls


def test_smtp_auth_before_starttls_is_refused(stack: LocalStack) -> None:
    with smtplib.SMTP(stack.host, stack.smtp.port, timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        code, _msg = client.docmd("AUTH", "PLAIN AHVzZXIAcGFzcw==")
        assert code == 530
        code, _msg = client.docmd("MAIL", "FROM:<lettershop@operator.example>")
        assert code == 530
    assert stack.smtp.received == []


def test_smtp_requires_auth_and_the_right_password(stack: LocalStack) -> None:
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    with smtplib.SMTP(stack.host, stack.smtp.port, timeout=10) as client:
        client.starttls(context=context)
        client.ehlo()
        code, _msg = client.docmd("MAIL", "FROM:<lettershop@operator.example>")
        assert code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(stack.smtp_user, "wrong")
    assert stack.smtp.received == []


def test_smtps_implicit_tls_variant(stack: LocalStack) -> None:
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    with smtplib.SMTP_SSL(stack.host, stack.smtps.port, context=context, timeout=10) as client:
        client.login(stack.smtp_user, stack.smtp_password)
        client.sendmail("a@operator.example", ["b@partner.example"], _raw("smtps"))
    [mail] = stack.smtps.wait_for(1)
    assert mail.authenticated_user == stack.smtp_user
    assert stack.smtp.received == []


def test_smtp_open_variant_takes_plain_unauthenticated_mail(stack: LocalStack) -> None:
    with smtplib.SMTP(stack.host, stack.smtp_open.port, timeout=10) as client:
        client.sendmail("a@operator.example", ["b@partner.example"], _raw("open"))
    [mail] = stack.smtp_open.wait_for(1)
    assert mail.authenticated_user is None
    assert not mail.tls


def test_smtp_wait_for_times_out(stack: LocalStack) -> None:
    with pytest.raises(TimeoutError):
        stack.smtp.wait_for(1, timeout=0.1)


# ------------------------------------------------------------------------ moto


def test_environment_points_boto3_at_moto(stack: LocalStack) -> None:
    for name, value in stack.env().items():
        assert os.environ[name] == value
    tables = boto3.client("dynamodb").list_tables()["TableNames"]  # no endpoint given
    assert {stack.names.channels_table, stack.names.state_table} <= set(tables)


def test_tables_have_the_template_key_schema(stack: LocalStack) -> None:
    template = aws.load_template()
    ddb = aws.client("dynamodb", stack.endpoint_url)
    for logical_id, name in (
        ("ChannelsTable", stack.names.channels_table),
        ("StateTable", stack.names.state_table),
    ):
        props = template["Resources"][logical_id]["Properties"]
        table = ddb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        assert table["AttributeDefinitions"] == props["AttributeDefinitions"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    channels = ddb.describe_table(TableName=stack.names.channels_table)["Table"]
    assert channels["KeySchema"] == [{"AttributeName": "channel_id", "KeyType": "HASH"}]
    assert channels["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    ttl = ddb.describe_time_to_live(TableName=stack.names.state_table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    assert ttl["TimeToLiveStatus"] == "ENABLED"

    buckets = {b["Name"] for b in aws.client("s3", stack.endpoint_url).list_buckets()["Buckets"]}
    assert {stack.names.scripts_bucket, stack.names.archive_bucket} <= buckets


def test_put_channel_writes_typed_attributes(stack: LocalStack) -> None:
    aws.put_channel(
        stack.endpoint_url,
        stack.names.channels_table,
        {
            "channel_id": "acme",
            "active": True,
            "pop3_port": 995,
            "poll_interval_minutes": 5,
            "allowed_senders": ["acme.example", "*.acme.example"],
            "script_timeout_seconds": 1.5,
        },
    )
    item = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.channels_table, Key={"channel_id": {"S": "acme"}}
    )["Item"]
    assert item["active"] == {"BOOL": True}
    assert item["pop3_port"] == {"N": "995"}
    assert item["script_timeout_seconds"] == {"N": "1.5"}
    assert item["allowed_senders"] == {"L": [{"S": "acme.example"}, {"S": "*.acme.example"}]}


def test_secrets_and_objects_helpers(stack: LocalStack) -> None:
    arn = aws.put_secret(stack.endpoint_url, "lettershop/acme/pop3", "s3cret")
    assert arn.startswith("arn:aws:secretsmanager:eu-central-1:")
    assert aws.put_secret(stack.endpoint_url, "lettershop/acme/pop3", {"password": "new"}) == arn
    value = aws.client("secretsmanager", stack.endpoint_url).get_secret_value(SecretId=arn)
    assert value["SecretString"] == '{"password": "new"}'

    aws.put_object(stack.endpoint_url, stack.names.scripts_bucket, "standard/noop.py", "print('hi')\n")
    aws.put_object(stack.endpoint_url, stack.names.scripts_bucket, "partners/acme/x.py", b"")
    assert aws.list_keys(stack.endpoint_url, stack.names.scripts_bucket, "standard/") == ["standard/noop.py"]
    assert aws.get_object(stack.endpoint_url, stack.names.scripts_bucket, "standard/noop.py") == (
        b"print('hi')\n"
    )


def test_reset_empties_moto_and_recreates_the_resources(stack: LocalStack) -> None:
    aws.put_channel(stack.endpoint_url, stack.names.channels_table, {"channel_id": "gone"})
    aws.put_object(stack.endpoint_url, stack.names.archive_bucket, "inbound/x.eml", b"x")
    aws.put_secret(stack.endpoint_url, "lettershop/gone", "x")

    stack.reset()

    ddb = aws.client("dynamodb", stack.endpoint_url)
    assert ddb.scan(TableName=stack.names.channels_table)["Items"] == []
    assert aws.list_keys(stack.endpoint_url, stack.names.archive_bucket) == []
    assert aws.client("secretsmanager", stack.endpoint_url).list_secrets()["SecretList"] == []
    assert stack.moto.ses_messages() == []


def test_ses_raw_send_after_verification_is_visible(stack: LocalStack) -> None:
    sesv2 = aws.client("sesv2", stack.endpoint_url)
    raw = _raw("via ses")
    with pytest.raises(sesv2.exceptions.MessageRejected):
        sesv2.send_email(
            FromEmailAddress="lettershop@operator.example",
            Destination={"ToAddresses": ["orders@partner.example"]},
            Content={"Raw": {"Data": raw}},
        )
    aws.verify_ses_identity(stack.endpoint_url, "lettershop@operator.example")
    aws.verify_ses_identity(stack.endpoint_url, "lettershop@operator.example")  # idempotent
    sent = sesv2.send_email(
        FromEmailAddress="lettershop@operator.example",
        Destination={"ToAddresses": ["orders@partner.example"]},
        Content={"Raw": {"Data": raw}},
    )
    [message] = stack.moto.ses_messages()
    assert message["id"] == sent["MessageId"]
    assert message["source"] == "lettershop@operator.example"
    assert "orders@partner.example" in message["destinations"]
    assert message["raw"] == raw


# -------------------------------------------------------- SMTP failure injection


def _send_open(stack: LocalStack, raw: bytes) -> None:
    with smtplib.SMTP(stack.host, stack.smtp_open.port, timeout=10) as client:
        client.sendmail("a@operator.example", ["b@partner.example"], raw)


@pytest.mark.parametrize("code", [421, 451, 452, 550])
def test_smtp_fail_next_at_data_refuses_then_accepts(stack: LocalStack, code: int) -> None:
    stack.smtp_open.fail_next(code, "x.y.z injected")

    with pytest.raises(smtplib.SMTPDataError) as refused:
        _send_open(stack, _raw("first try"))
    assert refused.value.smtp_code == code
    assert refused.value.smtp_error == b"x.y.z injected"
    assert stack.smtp_open.received == []
    assert [(r.at, r.code) for r in stack.smtp_open.refused] == [("DATA", code)]
    assert stack.smtp_open.pending_failures == 0

    _send_open(stack, _raw("second try"))
    [mail] = stack.smtp_open.wait_for(1)
    assert b"second try" in mail.data


def test_smtp_fail_next_at_rcpt_refuses_the_recipient(stack: LocalStack) -> None:
    stack.smtp_open.fail_next(550, at="RCPT", times=2)

    for _attempt in range(2):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            _send_open(stack, _raw("refused"))
        assert refused.value.recipients == {"b@partner.example": (550, b"5.1.1 Mailbox unavailable")}
    _send_open(stack, _raw("accepted"))

    assert len(stack.smtp_open.wait_for(1)) == 1
    assert [(r.at, r.code, r.argument) for r in stack.smtp_open.refused] == [
        ("RCPT", 550, "b@partner.example"),
        ("RCPT", 550, "b@partner.example"),
    ]


def test_smtp_421_closes_the_connection(stack: LocalStack) -> None:
    stack.smtp_open.fail_next(421, at="MAIL")
    with smtplib.SMTP(stack.host, stack.smtp_open.port, timeout=10) as client:
        client.ehlo()
        code, _text = client.mail("a@operator.example")
        assert code == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_smtp_injected_failures_work_with_starttls_and_auth(stack: LocalStack) -> None:
    stack.smtp.fail_next(451, "4.3.0 try later")
    context = ssl.create_default_context(cafile=str(stack.ca_file))

    def send() -> None:
        with smtplib.SMTP(stack.host, stack.smtp.port, timeout=10) as client:
            client.starttls(context=context)
            client.login(stack.smtp_user, stack.smtp_password)
            client.sendmail("a@operator.example", ["b@partner.example"], _raw("tls"))

    with pytest.raises(smtplib.SMTPDataError, match="try later"):
        send()
    send()
    assert len(stack.smtp.wait_for(1)) == 1


def test_smtp_clear_forgets_injected_failures(stack: LocalStack) -> None:
    stack.smtp_open.fail_next(451, times=3)
    stack.smtp_open.clear()
    assert stack.smtp_open.pending_failures == 0
    _send_open(stack, _raw("after clear"))
    assert len(stack.smtp_open.wait_for(1)) == 1
    assert stack.smtp_open.refused == []


def test_smtp_fail_next_checks_its_arguments(stack: LocalStack) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        stack.smtp_open.fail_next(250)
    with pytest.raises(ValueError, match="at must be"):
        stack.smtp_open.fail_next(451, at="EHLO")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        stack.smtp_open.fail_next(451, times=0)


# ------------------------------------------------------------------- TCP proxy


def _pop3_via(proxy: TcpProxy, user: str, password: str) -> poplib.POP3:
    client = poplib.POP3(proxy.host, proxy.port, timeout=10)
    client.user(user)
    client.pass_(password)
    return client


def test_proxy_is_transparent_for_stls_and_implicit_tls(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    user, password = mailbox
    raw = _raw("through the proxy")
    stack.dovecot.deliver(user, raw)
    context = ssl.create_default_context(cafile=str(stack.ca_file))

    with TcpProxy(stack.dovecot.pop3_port) as plain, TcpProxy(stack.dovecot.pop3s_port) as implicit:
        client = poplib.POP3(plain.host, plain.port, timeout=10)
        client.stls(context)
        client.user(user)
        client.pass_(password)
        assert b"\r\n".join(client.retr(1)[1]) + b"\r\n" == raw
        client.quit()
        client = poplib.POP3_SSL(implicit.host, implicit.port, context=context, timeout=10)
        client.user(user)
        client.pass_(password)
        assert client.stat()[0] == 1
        client.quit()
        assert (plain.connections, implicit.connections) == (1, 1)
        assert plain.cuts == implicit.cuts == []


def test_proxy_cut_after_breaks_a_retr_in_the_middle(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    user, password = mailbox
    raw = _raw("large", b"0123456789abcdef\r\n" * 20_000)
    stack.dovecot.deliver(user, raw)

    with TcpProxy(stack.dovecot.pop3_port) as proxy:
        proxy.cut_after(8_000)
        client = _pop3_via(proxy, user, password)
        with pytest.raises(poplib.error_proto, match="EOF"):
            client.retr(1)
        client.close()
        [cut] = proxy.cuts
        assert "cut after 8000 bytes" in cut

        proxy.reset()
        client = _pop3_via(proxy, user, password)
        assert len(b"".join(client.retr(1)[1])) > 300_000
        client.quit()
    assert stack.dovecot.mailbox(user) == [raw]


def test_proxy_cut_on_quit_keeps_a_deleted_message(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    user, password = mailbox
    raw = _raw("not deleted")
    stack.dovecot.deliver(user, raw)

    with TcpProxy(stack.dovecot.pop3_port) as proxy:
        proxy.cut_on(b"QUIT")
        client = _pop3_via(proxy, user, password)
        client.dele(1)
        with pytest.raises(poplib.error_proto, match="EOF"):
            client.quit()
        client.close()
        assert proxy.cuts == ["connection 1: client sent b'QUIT'"]

    assert stack.dovecot.mailbox(user) == [raw]


@pytest.mark.parametrize("how", ["reset", "close"])
def test_proxy_refuse_closes_new_connections_until_reset(
    stack: LocalStack, mailbox: tuple[str, str], how: str
) -> None:
    with TcpProxy(stack.dovecot.pop3_port) as proxy:
        proxy.refuse(how=how)  # type: ignore[arg-type]
        expected = ConnectionResetError if how == "reset" else poplib.error_proto
        with pytest.raises(expected):
            poplib.POP3(proxy.host, proxy.port, timeout=10)
        assert proxy.cuts == [f"connection 1 refused ({how})"]

        proxy.reset()
        _pop3_via(proxy, *mailbox).quit()


def test_proxy_delay_slows_every_chunk(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    with TcpProxy(stack.dovecot.pop3_port) as proxy:
        client = _pop3_via(proxy, *mailbox)
        proxy.delay(0.2)
        started = time.monotonic()
        client.noop()  # one chunk each way
        assert time.monotonic() - started >= 0.4
        proxy.reset()
        client.quit()


def test_proxy_latency_delays_each_chunk_once_and_a_new_connection_one_round_trip(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    user, password = mailbox
    with TcpProxy(stack.dovecot.pop3_port) as proxy:
        proxy.latency(0.1)
        started = time.monotonic()
        client = poplib.POP3(proxy.host, proxy.port, timeout=10)  # handshake 0.2 s, greeting 0.1 s
        assert time.monotonic() - started >= 0.3
        client.user(user)
        client.pass_(password)
        started = time.monotonic()
        client._putcmd("NOOP")  # type: ignore[attr-defined]  # two commands pipelined in one write
        client._putcmd("NOOP")  # type: ignore[attr-defined]
        client._getresp()  # type: ignore[attr-defined]
        client._getresp()  # type: ignore[attr-defined]
        pipelined = time.monotonic() - started
        assert 0.2 <= pipelined < 0.35  # one round trip for both, not one per chunk
        proxy.reset()
        client.quit()


def test_proxy_latency_without_handshake_lets_a_connection_start_at_once(stack: LocalStack) -> None:
    with TcpProxy(stack.moto.port) as proxy:
        proxy.latency(0.1, handshake=False)
        started = time.monotonic()
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
            sock.sendall(b"GET /moto-api/ HTTP/1.0\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.")
        assert 0.2 <= time.monotonic() - started < 0.35


def test_proxy_stop_closes_open_connections_and_leaves_no_thread(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    proxy = TcpProxy(stack.dovecot.pop3_port)
    proxy.start()
    client = _pop3_via(proxy, *mailbox)
    assert len(proxy.threads()) == 2  # the acceptor and one connection

    proxy.stop()

    assert proxy.threads() == []
    assert not any(t.name.startswith(f"tcp-proxy-{proxy.port}") for t in threading.enumerate())
    with pytest.raises((poplib.error_proto, OSError)):
        client.noop()
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=1)
    proxy.stop()  # idempotent


def test_proxy_to_a_closed_port_drops_the_client(stack: LocalStack) -> None:
    with TcpProxy(free_port()) as proxy:
        with pytest.raises((poplib.error_proto, OSError)):
            poplib.POP3(proxy.host, proxy.port, timeout=10)
        deadline = time.monotonic() + 5
        while not proxy.cuts and time.monotonic() < deadline:
            time.sleep(0.01)
        [cut] = proxy.cuts
        assert "not reachable" in cut

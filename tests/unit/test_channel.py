"""The channel item (DESIGN §3): defaults, DynamoDB value types, cross-field rules, every error listed."""

from decimal import Decimal
from typing import Any

import pytest

from domain.channel import InvalidChannel, load_channel
from domain.shipments.s10 import SERIAL_MAX

MINIMAL: dict[str, Any] = {
    "channel_id": "acme-1",
    "subject_keyword": "LetterShop",
    "pop3_host": "pop.example.com",
    "pop3_username": "acme",
    "pop3_password_secret": "lettershop/acme/pop3",
    "sender_address": "lettershop@operator.example",
    "smtp_host": "smtp.example.com",
}


def errors_of(**item: Any) -> dict[str, str]:
    with pytest.raises(InvalidChannel) as caught:
        load_channel(item)
    return dict(caught.value.errors)


def test_defaults_follow_the_design() -> None:
    channel = load_channel(MINIMAL)

    assert channel.active is False
    assert channel.exclusive_account is False
    assert channel.partner == "acme-1"
    assert (channel.pop3_security, channel.incoming_port) == ("tls", 995)
    assert (channel.reply_via, channel.smtp_port, channel.smtp_security, channel.smtp_auth) == (
        "smtp",
        25,
        "starttls",
        False,
    )
    assert channel.use_standard_script is True
    assert channel.allowed_senders == []
    assert (channel.poll_interval_minutes, channel.max_messages_per_poll) == (5, 50)
    assert channel.max_message_bytes == 26214400
    assert channel.import_file_patterns == ["*.csv", "*.txt"]
    assert (channel.script_timeout_seconds, channel.max_attempts) == (60, 5)


def test_plain_pop3_defaults_to_port_110() -> None:
    assert load_channel({**MINIMAL, "pop3_security": "starttls"}).incoming_port == 110
    assert (
        load_channel({**MINIMAL, "pop3_security": "none", "pop3_port": Decimal(1110)}).incoming_port == 1110
    )


def test_dynamodb_item_with_decimals_and_string_sets_loads() -> None:
    item = {
        **MINIMAL,
        "active": True,
        "pop3_port": Decimal("995"),
        "smtp_port": Decimal("587"),
        "poll_interval_minutes": Decimal("10"),
        "allowed_senders": {"Orders@Partner.Example", "*.Partner.example", "bücher.example"},
        "import_file_patterns": {"*.csv"},
        "trusted_authserv_ids": {"mx.operator.example"},
    }

    channel = load_channel(item)

    assert channel.smtp_port == 587
    assert channel.poll_interval_minutes == 10
    assert channel.allowed_senders == ["*.partner.example", "orders@partner.example", "xn--bcher-kva.example"]


def test_keyword_required_on_shared_account_only() -> None:
    assert "subject_keyword is required" in str(errors_of(**{**MINIMAL, "subject_keyword": None}))
    assert (
        load_channel({**MINIMAL, "subject_keyword": None, "exclusive_account": True}).subject_keyword is None
    )


def test_smtp_fields_required_for_smtp_and_auth() -> None:
    assert "smtp_host is required" in str(errors_of(**{**MINIMAL, "smtp_host": None}))
    assert load_channel({**MINIMAL, "smtp_host": None, "reply_via": "ses"}).reply_via == "ses"
    assert "smtp_username and smtp_password_secret" in str(errors_of(**{**MINIMAL, "smtp_auth": True}))


def test_every_error_is_listed_with_its_field() -> None:
    errors = errors_of(
        channel_id="Bad_Id",
        pop3_host="pop",
        pop3_username="u",
        pop3_password_secret="s",
        sender_address="not an address",
        smtp_host="smtp",
        smtp_port=Decimal(70000),
        pop3_security="ssl",
        poll_interval_minutes=0,
        allowed_senders=["@nobody"],
        prescript="../evil.py",
        subject_keywrd="typo",
    )

    assert set(errors) >= {
        "channel_id",
        "sender_address",
        "smtp_port",
        "pop3_security",
        "poll_interval_minutes",
        "allowed_senders",
        "prescript",
        "subject_keywrd",
    }
    assert "Extra inputs" in errors["subject_keywrd"]


def test_invalid_channel_message_names_channel_and_fields() -> None:
    with pytest.raises(InvalidChannel, match=r"channel acme-1 is not valid: .*pop3_host"):
        load_channel({k: v for k, v in MINIMAL.items() if k != "pop3_host"})


@pytest.mark.parametrize("name", ["x/y.py", "..py", "script.sh", ".hidden.py", "a\\b.py"])
def test_script_names_are_file_names_ending_in_py(name: str) -> None:
    assert "prescript" in errors_of(**{**MINIMAL, "prescript": name})


def test_authenticated_sender_needs_trusted_servers() -> None:
    assert "trusted_authserv_ids is required" in str(
        errors_of(**{**MINIMAL, "require_authenticated_sender": True})
    )


@pytest.mark.parametrize("partner_id", ["a/b", "..", "Acme AG"])
def test_partner_id_names_a_script_folder_safely(partner_id: str) -> None:
    assert "partner_id" in errors_of(**{**MINIMAL, "partner_id": partner_id})


@pytest.mark.parametrize("field", ["channel_id", "partner_id"])
@pytest.mark.parametrize("padded", ["acme ", " acme", "acme\n", "\tacme"])
def test_an_id_with_blanks_around_it_is_refused_not_trimmed(field: str, padded: str) -> None:
    errors = errors_of(**(MINIMAL | {field: padded}))
    assert errors[field] == (
        f"{padded!r} has blanks around it: an id is the item's key, written exactly "
        "(lower-case letters, digits and hyphens)"
    )


@pytest.mark.parametrize("address", ["x@.", "a@b@c.d", "a@@b.example", "Orders <a@b.example>", "a@localhost"])
def test_sender_address_is_one_plain_address_read_by_the_senders_parser(address: str) -> None:
    assert (
        "not one plain e-mail address"
        in errors_of(**(MINIMAL | {"sender_address": address}))["sender_address"]
    )


def test_max_message_bytes_is_at_most_200_mib() -> None:
    """The raw message and its decoded attachments must fit the function's 512 MB of /tmp
    (tests/integration/test_rehearsal.py runs the build at this limit)."""
    assert load_channel(MINIMAL | {"max_message_bytes": Decimal(200 * 1024 * 1024)}).max_message_bytes
    assert "max_message_bytes" in errors_of(
        **(MINIMAL | {"max_message_bytes": Decimal(200 * 1024 * 1024 + 1)})
    )
    assert (
        "less than or equal"
        in errors_of(**(MINIMAL | {"max_message_bytes": Decimal(10**15)}))["max_message_bytes"]
    )


def test_the_caps_of_a_message_have_their_defaults_and_bounds() -> None:
    channel = load_channel(MINIMAL)
    assert (channel.max_import_files, channel.max_rows_per_file) == (10, 100_000)
    errors = errors_of(**(MINIMAL | {"max_import_files": 101, "max_rows_per_file": 0}))
    assert set(errors) == {"max_import_files", "max_rows_per_file"}


def test_within_the_defaults_no_message_takes_more_than_a_thousandth_of_the_serial_range() -> None:
    channel = load_channel(MINIMAL)
    # 100,000 ids a day: the largest file the defaults take (max_rows_per_file) fits it whole
    assert channel.max_shipments_per_day == 100_000 == channel.max_rows_per_file
    assert channel.max_shipments_per_day <= (SERIAL_MAX + 1) // 1000  # 0.1 % of 00000001..99999999
    assert load_channel(MINIMAL | {"max_shipments_per_day": Decimal(10_000_000)}).max_shipments_per_day
    errors = errors_of(**(MINIMAL | {"max_shipments_per_day": 10_000_001}))
    assert errors == {"max_shipments_per_day": "Input should be less than or equal to 10000000"}
    assert set(errors_of(**(MINIMAL | {"max_shipments_per_day": 0}))) == {"max_shipments_per_day"}


# ---------------------------------------------------------------- OAuth 2.0 logins (issue 12)

MICROSOFT_POP3: dict[str, Any] = {
    **{k: v for k, v in MINIMAL.items() if k != "pop3_password_secret"},
    "pop3_login": "oauth2",
    "oauth_provider": "microsoft",
    "oauth_tenant": "contoso.onmicrosoft.com",
    "oauth_client_id": "00000000-1111-2222-3333-444444444444",
    "oauth_secret": "lettershop/acme/oauth",
}


def test_a_password_channel_is_what_it_was() -> None:
    channel = load_channel(MINIMAL)

    assert (channel.pop3_login, channel.smtp_login, channel.oauth_client) == ("password", "password", None)
    assert "pop3_password_secret is required when pop3_login is password" in str(
        errors_of(**{k: v for k, v in MINIMAL.items() if k != "pop3_password_secret"})
    )


def test_microsoft_gets_its_token_url_from_the_tenant_and_the_exchange_scope() -> None:
    client = load_channel(MICROSOFT_POP3).oauth_client

    assert client is not None
    assert client.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert client.scope == "https://outlook.office365.com/.default"
    assert (client.client_id, client.secret) == (
        "00000000-1111-2222-3333-444444444444",
        "lettershop/acme/oauth",
    )


def test_google_needs_only_the_key_and_asks_for_the_mail_scope() -> None:
    item = {**MICROSOFT_POP3, "oauth_provider": "google", "oauth_tenant": None, "oauth_client_id": None}
    client = load_channel(item).oauth_client

    assert client is not None
    assert (client.token_url, client.scope) == (
        "https://oauth2.googleapis.com/token",
        "https://mail.google.com/",
    )


def test_a_generic_provider_needs_its_token_url_and_may_send_no_scope() -> None:
    item = {**MICROSOFT_POP3, "oauth_provider": "generic", "oauth_tenant": None}
    assert "oauth_token_url is required when oauth_provider is generic" in str(errors_of(**item))

    client = load_channel({**item, "oauth_token_url": "https://idp.example/token"}).oauth_client
    assert client is not None
    assert (client.token_url, client.scope) == ("https://idp.example/token", None)


def test_each_missing_oauth_attribute_is_named() -> None:
    assert "oauth_provider (microsoft, google or generic) is required" in str(
        errors_of(**{**MICROSOFT_POP3, "oauth_provider": None})
    )
    assert (
        "oauth_secret and oauth_tenant and oauth_client_id are required when oauth_provider is microsoft"
        in str(
            errors_of(
                **{**MICROSOFT_POP3, "oauth_secret": None, "oauth_tenant": None, "oauth_client_id": None}
            )
        )
    )


@pytest.mark.parametrize(
    "url", ["http://login.example/token", "login.example/token", "https://u:p@idp.example/t"]
)
def test_the_token_url_is_an_https_url(url: str) -> None:
    assert (
        "is not an https:// URL" in errors_of(**{**MICROSOFT_POP3, "oauth_token_url": url})["oauth_token_url"]
    )


@pytest.mark.parametrize("tenant", ["contoso/../x", "a b", "-x"])
def test_the_tenant_is_an_id_or_a_domain(tenant: str) -> None:
    assert "is not a tenant" in errors_of(**{**MICROSOFT_POP3, "oauth_tenant": tenant})["oauth_tenant"]


def test_oauth2_is_refused_without_tls() -> None:
    assert "pop3_login oauth2 needs pop3_security tls or starttls" in str(
        errors_of(**{**MICROSOFT_POP3, "pop3_security": "none"})
    )
    assert load_channel({**MICROSOFT_POP3, "pop3_security": "starttls"}).incoming_port == 110
    smtp = {
        **MICROSOFT_POP3,
        "smtp_auth": True,
        "smtp_login": "oauth2",
        "smtp_username": "box@contoso.example",
    }
    assert load_channel(smtp).smtp_oauth
    assert "smtp_login oauth2 needs smtp_security starttls or tls" in str(
        errors_of(**{**smtp, "smtp_security": "none"})
    )


def test_smtp_oauth2_is_a_kind_of_smtp_auth_and_sends_as_a_mailbox() -> None:
    item = {**MINIMAL, "smtp_login": "oauth2", "oauth_provider": "google", "oauth_secret": "k"}
    assert "smtp_login oauth2 needs smtp_auth true" in str(errors_of(**item))
    assert "smtp_username (the mailbox replies are sent as) is required" in str(
        errors_of(**{**item, "smtp_auth": True})
    )
    channel = load_channel({**item, "smtp_auth": True, "smtp_username": "box@acme.example"})
    assert (channel.pop3_login, channel.smtp_oauth, channel.smtp_password_secret) == ("password", True, None)
    assert channel.oauth_client is not None

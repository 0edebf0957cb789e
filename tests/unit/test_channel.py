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


# ---------------------------------------------------------------- Microsoft Graph (issue 22)

MICROSOFT: dict[str, Any] = {
    "oauth_provider": "microsoft",
    "oauth_tenant": "contoso.onmicrosoft.com",
    "oauth_client_id": "00000000-1111-2222-3333-444444444444",
    "oauth_secret": "lettershop/acme/oauth",
}
GRAPH: dict[str, Any] = {
    "channel_id": "acme-graph",
    "subject_keyword": "LetterShop",
    "mailbox_protocol": "graph",
    "graph_mailbox": "lettershop@contoso.example",
    "sender_address": "lettershop@contoso.example",
    "reply_via": "graph",
    **MICROSOFT,
}


def test_a_channel_reads_pop3_unless_it_says_graph() -> None:
    channel = load_channel(MINIMAL)

    assert (channel.mailbox_protocol, channel.uses_graph, channel.graph_client) == ("pop3", False, None)


def test_a_graph_channel_needs_no_pop3_attribute_and_gets_a_graph_token() -> None:
    channel = load_channel(GRAPH)

    assert (channel.mailbox_protocol, channel.reply_via, channel.save_to_sent_items) == (
        "graph",
        "graph",
        True,
    )
    assert (channel.pop3_host, channel.pop3_username, channel.oauth_client) == (None, None, None)
    client = channel.graph_client
    assert client is not None
    assert client.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert client.scope == "https://graph.microsoft.com/.default"
    assert (client.client_id, client.secret) == (
        "00000000-1111-2222-3333-444444444444",
        "lettershop/acme/oauth",
    )


def test_a_national_cloud_or_the_local_server_has_its_own_service_root_and_scope() -> None:
    channel = load_channel(GRAPH | {"graph_endpoint": "https://Graph.Microsoft.US/v1.0/"})

    assert channel.graph_endpoint == "https://Graph.Microsoft.US/v1.0"
    assert channel.graph_scope == "https://graph.microsoft.us/.default"
    assert load_channel(GRAPH | {"graph_endpoint": "https://127.0.0.1:8443/v1.0"}).graph_scope == (
        "https://127.0.0.1:8443/.default"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://graph.microsoft.com/v1.0",
        "graph.microsoft.com",
        "https://u@evil.example/v1.0",
        "https://g.example/v1.0?x=1",
    ],
)
def test_the_graph_endpoint_is_an_https_service_root(url: str) -> None:
    assert (
        "is not the https:// service root" in errors_of(**GRAPH | {"graph_endpoint": url})["graph_endpoint"]
    )


def test_pop3_host_and_username_are_still_required_for_a_pop3_mailbox_named_by_attribute() -> None:
    errors = errors_of(**{k: v for k, v in MINIMAL.items() if k not in ("pop3_host", "pop3_username")})

    assert errors["pop3_host"] == "Field required when mailbox_protocol is pop3 (the default)"
    assert errors["pop3_username"] == "Field required when mailbox_protocol is pop3 (the default)"
    # an invalid protocol is reported once, not also as missing POP3 attributes
    assert set(errors_of(**GRAPH | {"mailbox_protocol": "imap"})) == {"mailbox_protocol"}


def test_a_graph_mailbox_needs_graph_mailbox() -> None:
    assert (
        "graph_mailbox (the user principal name or id of the mailbox) is required "
        "when mailbox_protocol is graph"
        in str(errors_of(**{k: v for k, v in GRAPH.items() if k != "graph_mailbox"}))
    )


@pytest.mark.parametrize(
    "pop3",
    [
        {"pop3_password_secret": "lettershop/acme/pop3"},
        {"pop3_security": "starttls"},
        {"pop3_host": "outlook.office365.com", "pop3_login": "oauth2"},
    ],
)
def test_a_graph_mailbox_refuses_a_pop3_login(pop3: dict[str, str]) -> None:
    problem = str(errors_of(**GRAPH | pop3))

    assert f"{', '.join(pop3)}: not used when mailbox_protocol is graph" in problem
    assert "remove them" in problem


@pytest.mark.parametrize("provider", [None, "google", "generic"])
def test_graph_takes_a_microsoft_client_only(provider: str | None) -> None:
    item = GRAPH | {"oauth_provider": provider, "oauth_token_url": "https://idp.example/token"}

    assert "mailbox_protocol graph needs oauth_provider microsoft" in str(errors_of(**item))
    assert "reply_via graph needs oauth_provider microsoft" in str(
        errors_of(
            **MINIMAL
            | {"reply_via": "graph", "graph_mailbox": "box@contoso.example", "oauth_provider": provider}
        )
    )


def test_a_graph_channel_names_each_missing_part_of_its_microsoft_client() -> None:
    item = GRAPH | {"oauth_tenant": None, "oauth_secret": None}

    assert "oauth_secret and oauth_tenant are required when oauth_provider is microsoft" in str(
        errors_of(**item)
    )


def test_reply_via_graph_for_a_pop3_mailbox_sends_as_graph_mailbox() -> None:
    item = MINIMAL | {"reply_via": "graph", **MICROSOFT}
    assert "graph_mailbox (the mailbox replies are sent as) is required when reply_via is graph" in str(
        errors_of(**item)
    )

    channel = load_channel(item | {"graph_mailbox": "box@contoso.example", "save_to_sent_items": False})

    assert (channel.mailbox_protocol, channel.reply_via, channel.save_to_sent_items) == (
        "pop3",
        "graph",
        False,
    )
    assert channel.graph_client is not None
    assert channel.oauth_client is None  # the POP3 login is a password: no XOAUTH2 client


def test_a_pop3_oauth_login_and_graph_replies_share_the_client_with_two_scopes() -> None:
    item = MICROSOFT_POP3 | {"reply_via": "graph", "graph_mailbox": "box@contoso.example"}

    channel = load_channel(item)

    assert channel.oauth_client is not None
    assert channel.graph_client is not None
    assert channel.oauth_client.scope == "https://outlook.office365.com/.default"
    assert channel.graph_client.scope == "https://graph.microsoft.com/.default"
    assert channel.graph_client.token_url == channel.oauth_client.token_url


@pytest.mark.parametrize(
    "setting",
    [{"graph_mailbox": "box@contoso.example"}, {"graph_endpoint": "https://graph.microsoft.us/v1.0"}],
)
def test_graph_settings_on_a_channel_without_graph_are_refused(setting: dict[str, str]) -> None:
    assert f"{next(iter(setting))}: used only when mailbox_protocol or reply_via is graph" in str(
        errors_of(**MINIMAL | setting)
    )


def test_save_to_sent_items_belongs_to_reply_via_graph() -> None:
    assert "save_to_sent_items: used only when reply_via is graph" in str(
        errors_of(**GRAPH | {"reply_via": "ses", "save_to_sent_items": False})
    )
    assert load_channel(GRAPH | {"reply_via": "ses"}).reply_via == "ses"


def test_a_graph_mailbox_may_reply_by_smtp_with_its_own_rules() -> None:
    item = GRAPH | {"reply_via": "smtp"}
    assert "smtp_host is required when reply_via is smtp" in str(errors_of(**item))

    channel = load_channel(item | {"smtp_host": "smtp.operator.example"})

    assert (channel.reply_via, channel.smtp_host) == ("smtp", "smtp.operator.example")


def test_the_rules_are_reported_also_when_another_attribute_is_wrong() -> None:
    errors = errors_of(
        **{k: v for k, v in GRAPH.items() if k != "graph_mailbox"} | {"poll_interval_minutes": 0}
    )

    assert "poll_interval_minutes" in errors
    assert "graph_mailbox (the user principal name or id of the mailbox) is required" in errors["item"]


@pytest.mark.parametrize(
    "item", [MINIMAL, GRAPH, MICROSOFT_POP3 | {"reply_via": "graph", "graph_mailbox": "b@c.example"}]
)
def test_a_dumped_channel_with_every_default_written_is_still_valid(item: dict[str, Any]) -> None:
    """The rules refuse a setting the channel would not use, not a default written out."""
    channel = load_channel(item)

    assert load_channel(channel.model_dump()) == channel

"""The e-mail communication channel: one DynamoDB item, validated by one model (DESIGN §3).

Operators edit the item in the AWS console, so the model accepts what DynamoDB gives back
(``Decimal`` numbers, string sets) and reports every problem at once, by attribute name.
Unknown attributes are refused: a typo such as ``subject_keywrd`` must not silently fall back
to a default. ``description`` is free text for the operator.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUndefined

from domain.errors import RejectedMessage
from domain.script_name import SCRIPT_NAME_RULE, is_script_name
from domain.senders import normalize_sender_pattern, sender_address

# Never trimmed (the model trims every other string): the id validated is the key written, so
# "acme " is refused, not read as acme and then stored as a second item (issue 17).
ChannelId = Annotated[str, StringConstraints(strip_whitespace=False, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(ge=1)]

DEFAULT_POP3_PORTS = {"tls": 995, "starttls": 110, "none": 110}

# OAuth 2.0 (XOAUTH2) per provider: the token endpoint and the scope a mailbox login needs.
MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"  # noqa: S105  # a URL
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105  # a URL, not a secret
DEFAULT_OAUTH_SCOPES = {
    "microsoft": "https://outlook.office365.com/.default",
    "google": "https://mail.google.com/",
}
# An Entra tenant: its id (a GUID) or one of its domains, e.g. contoso.onmicrosoft.com.
TENANT_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$"
Login = Literal["password", "oauth2"]

# Microsoft Graph (issue 22): the service root of the global cloud; a national cloud has its own
# (https://learn.microsoft.com/en-us/graph/deployments), and an app-only token for it is asked for
# with the scope "<its origin>/.default" (the client-credentials grant's resource, e.g.
# https://graph.microsoft.com/.default).
GRAPH_ENDPOINT = "https://graph.microsoft.com/v1.0"
# The attributes that only a mailbox read over POP3 uses, and those that only Graph uses.
POP3_SETTINGS = (
    "pop3_host",
    "pop3_port",
    "pop3_security",
    "pop3_username",
    "pop3_login",
    "pop3_password_secret",
)
GRAPH_SETTINGS = ("graph_mailbox", "graph_endpoint")


@dataclass(frozen=True)
class OAuthClient:
    """The channel's one OAuth 2.0 client, with the provider's defaults filled in.

    ``secret`` is the Secrets Manager id of the client secret (``microsoft``, ``generic``) or of
    the service account's JSON key (``google``).
    """

    provider: Literal["microsoft", "google", "generic"]
    token_url: str
    client_id: str | None
    secret: str
    scope: str | None


MAX_MESSAGE_BYTES = 200 * 1024 * 1024
MAX_SHIPMENTS_PER_DAY = 10_000_000  # 10 % of the S10 serial range: a typo cannot give a channel all of it


class Channel(BaseModel):
    """One channel item. Field names are the DynamoDB attribute names.

    Its validator is built when the first item is validated or the schema is asked for
    (``defer_build``), not when the module is imported (the cold start, issue 11)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, defer_build=True)

    channel_id: ChannelId
    partner_id: ChannelId | None = None  # names a folder of scripts: the same rules as a channel id
    description: str | None = None
    active: bool = False
    exclusive_account: bool = False
    subject_keyword: NonEmpty | None = None

    # Where the mail is read: a POP3 server (pop3_*), or a Microsoft 365 mailbox through Microsoft
    # Graph (graph_*) with the channel's Microsoft OAuth client. Declared before the attributes
    # it makes required, which are checked against it (_required_for_pop3).
    mailbox_protocol: Literal["pop3", "graph"] = "pop3"

    pop3_host: NonEmpty | None = Field(default=None, validate_default=True)
    pop3_port: Port | None = None
    pop3_security: Literal["tls", "starttls", "none"] = "tls"
    pop3_username: NonEmpty | None = Field(default=None, validate_default=True)
    pop3_login: Login = "password"
    pop3_password_secret: NonEmpty | None = None

    # The mailbox Graph reads (mailbox_protocol graph) and sends as (reply_via graph): its user
    # principal name or object id, the {id | userPrincipalName} of /users/{...}/messages.
    graph_mailbox: NonEmpty | None = None
    graph_endpoint: NonEmpty = GRAPH_ENDPOINT

    sender_address: NonEmpty
    reply_via: Literal["smtp", "ses", "graph"] = "smtp"
    # reply_via graph: keep a copy of each reply in the mailbox's Sent Items.
    save_to_sent_items: bool = True
    smtp_host: NonEmpty | None = None
    smtp_port: Port = 25
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_auth: bool = False
    smtp_login: Login = "password"
    smtp_username: NonEmpty | None = None
    smtp_password_secret: NonEmpty | None = None

    # One OAuth 2.0 client per channel, used by pop3_login / smtp_login "oauth2".
    oauth_provider: Literal["microsoft", "google", "generic"] | None = None
    oauth_tenant: Annotated[str, StringConstraints(strip_whitespace=True)] | None = None
    oauth_token_url: NonEmpty | None = None
    oauth_client_id: NonEmpty | None = None
    oauth_secret: NonEmpty | None = None
    oauth_scope: NonEmpty | None = None

    # Never trimmed (as the ids): the name checked is the name fetched (domain.script_name).
    prescript: Annotated[str, StringConstraints(strip_whitespace=False, min_length=1)] | None = None
    postscript: Annotated[str, StringConstraints(strip_whitespace=False, min_length=1)] | None = None
    use_standard_script: bool = True

    allowed_senders: list[str] = Field(default_factory=list)
    poll_interval_minutes: Annotated[int, Field(ge=1, le=1440)] = 5
    max_messages_per_poll: Annotated[int, Field(ge=1, le=1000)] = 50
    # At most 200 MiB: the function has 512 MB of /tmp, where the raw message is spooled and then its
    # decoded attachments (three quarters of a base64 message): 350 MiB at most (make rehearse).
    max_message_bytes: Annotated[int, Field(ge=1, le=MAX_MESSAGE_BYTES)] = 26_214_400
    import_file_patterns: list[NonEmpty] = Field(default_factory=lambda: ["*.csv", "*.txt"], min_length=1)
    # At most 120 s: a pre- and a postscript must fit into the poll function's 300 s with room to spare.
    script_timeout_seconds: Annotated[int, Field(ge=1, le=120)] = 60
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    # Error replies to one sender per hour; the rest are rejected, so no mail loop can grow (§6).
    max_error_replies_per_hour: Annotated[int, Field(ge=0, le=1000)] = 3
    # Caps checked before any shipment id is allocated (DESIGN §3).
    max_import_files: Annotated[int, Field(ge=1, le=100)] = 10
    max_rows_per_file: Annotated[int, Field(ge=1, le=1_000_000)] = 100_000
    # Shipment ids a day (UTC): at most 0.1 % of the S10 range shared by every channel (issue 17).
    max_shipments_per_day: Annotated[int, Field(ge=1, le=MAX_SHIPMENTS_PER_DAY)] = 100_000
    require_authenticated_sender: bool = False
    trusted_authserv_ids: list[NonEmpty] = Field(default_factory=list)

    @field_validator("allowed_senders")
    @classmethod
    def _normalise_senders(cls, entries: list[str]) -> list[str]:
        return sorted({normalize_sender_pattern(entry) for entry in entries})

    @field_validator("channel_id", "partner_id", mode="before")
    @classmethod
    def _refuse_blanks_around_ids(cls, value: Any) -> Any:
        if isinstance(value, str) and value != value.strip():
            raise ValueError(
                f"{value!r} has blanks around it: an id is the item's key, written exactly "
                "(lower-case letters, digits and hyphens)"
            )
        return value

    @field_validator("sender_address")
    @classmethod
    def _check_sender_address(cls, value: str) -> str:
        """One plain address, read by the same parser as a partner's From (``x@.``, ``a@b@c.d``,
        ``Name <a@b.example>`` are refused)."""
        problem = f"'{value}' is not one plain e-mail address such as lettershop@example.com"
        if any(c.isspace() or c in '<>,;"()' for c in value):
            raise ValueError(problem)
        try:
            parsed = sender_address([value])
        except RejectedMessage as error:
            reason = str(error).replace("the From header", "it").replace("the From address", "it")
            raise ValueError(f"{problem}: {reason}") from None
        if "." not in parsed.rpartition("@")[2]:
            raise ValueError(f"{problem}: its domain has no dot")
        return value

    @field_validator("oauth_tenant")
    @classmethod
    def _check_tenant(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(TENANT_PATTERN, value):
            raise ValueError(
                f"'{value}' is not a tenant: the Directory (tenant) ID of the Entra app, or a domain "
                "of the tenant such as contoso.onmicrosoft.com"
            )
        return value

    @field_validator("oauth_token_url")
    @classmethod
    def _check_token_url(cls, value: str | None) -> str | None:
        if value is not None and not _is_https_url(value):
            raise ValueError(f"'{value}' is not an https:// URL of a token endpoint")
        return value

    @field_validator("graph_endpoint")
    @classmethod
    def _check_graph_endpoint(cls, value: str) -> str:
        if not _is_https_url(value) or "?" in value or "#" in value:
            raise ValueError(
                f"'{value}' is not the https:// service root of Microsoft Graph, such as {GRAPH_ENDPOINT}"
            )
        return value.rstrip("/")

    @field_validator("pop3_host", "pop3_username")
    @classmethod
    def _required_for_pop3(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Required when the mail is read over POP3 (the default); named by its own attribute, as
        pydantic names a missing field. Not checked when mailbox_protocol itself is invalid."""
        if value is None and info.data.get("mailbox_protocol") == "pop3":
            raise ValueError("Field required when mailbox_protocol is pop3 (the default)")
        return value

    @field_validator("prescript", "postscript")
    @classmethod
    def _check_script_name(cls, value: str | None) -> str | None:
        if value is not None and not is_script_name(value):
            raise ValueError(f"'{value}' is not a script name: {SCRIPT_NAME_RULE}")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> "Channel":
        fields_set = self.model_fields_set
        problems = combination_problems(
            lambda name: getattr(self, name),
            lambda name: name in fields_set and _set_apart_from_default(name, getattr(self, name)),
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def partner(self) -> str:
        """Whose partner-specific scripts apply: ``partner_id``, or the channel id."""
        return self.partner_id or self.channel_id

    @property
    def incoming_port(self) -> int:
        return self.pop3_port or DEFAULT_POP3_PORTS[self.pop3_security]

    @property
    def smtp_oauth(self) -> bool:
        """Replies are sent through an SMTP login with an OAuth 2.0 token (``AUTH XOAUTH2``)."""
        return self.reply_via == "smtp" and self.smtp_auth and self.smtp_login == "oauth2"

    @property
    def pop3_oauth(self) -> bool:
        """The mail is read over POP3 with an OAuth 2.0 token (``AUTH XOAUTH2``)."""
        return self.mailbox_protocol == "pop3" and self.pop3_login == "oauth2"

    @property
    def uses_graph(self) -> bool:
        """The channel reads or replies through Microsoft Graph."""
        return self.mailbox_protocol == "graph" or self.reply_via == "graph"

    @property
    def graph_scope(self) -> str:
        """The scope of an app-only Graph token: the service root's origin and ``/.default``."""
        scheme, _, rest = self.graph_endpoint.partition("://")
        return f"{scheme.lower()}://{rest.split('/', 1)[0].lower()}/.default"

    @property
    def graph_client(self) -> OAuthClient | None:
        """The channel's Microsoft OAuth client asking for a Graph token, when the channel uses Graph
        (the combination rules made sure the client is a complete ``microsoft`` one)."""
        if not self.uses_graph:
            return None
        assert self.oauth_secret is not None  # noqa: S101
        return OAuthClient(
            provider="microsoft",
            token_url=self.oauth_token_url or MICROSOFT_TOKEN_URL.format(tenant=self.oauth_tenant),
            client_id=self.oauth_client_id,
            secret=self.oauth_secret,
            scope=self.graph_scope,
        )

    @property
    def oauth_client(self) -> OAuthClient | None:
        """The OAuth client with the provider's defaults, when a login of the channel uses OAuth
        (``XOAUTH2`` over POP3 or SMTP; Graph's token is :attr:`graph_client`'s)."""
        if not (self.pop3_oauth or self.smtp_oauth):
            return None
        # the combination rules made sure these are set
        assert self.oauth_provider is not None  # noqa: S101
        assert self.oauth_secret is not None  # noqa: S101
        token_url = self.oauth_token_url
        if token_url is None:
            token_url = (
                GOOGLE_TOKEN_URL
                if self.oauth_provider == "google"
                else MICROSOFT_TOKEN_URL.format(tenant=self.oauth_tenant)
            )
        return OAuthClient(
            provider=self.oauth_provider,
            token_url=token_url,
            client_id=self.oauth_client_id,
            secret=self.oauth_secret,
            scope=self.oauth_scope or DEFAULT_OAUTH_SCOPES.get(self.oauth_provider),
        )


def combination_problems(value: Callable[[str], Any], given: Callable[[str], bool]) -> list[str]:
    """Rules between attributes; ``value(name)`` gives an attribute's value or its default,
    ``given(name)`` whether the item sets it to another value than its default."""
    problems = []
    if not value("exclusive_account") and not value("subject_keyword"):
        problems.append("subject_keyword is required when exclusive_account is false")
    if value("reply_via") == "smtp" and not value("smtp_host"):
        problems.append("smtp_host is required when reply_via is smtp")
    problems += _graph_problems(value, given)
    problems += _login_problems(value)
    if value("require_authenticated_sender") and not value("trusted_authserv_ids"):
        problems.append("trusted_authserv_ids is required when require_authenticated_sender is true")
    return problems


def _graph_problems(value: Callable[[str], Any], given: Callable[[str], bool]) -> list[str]:
    """Microsoft Graph (issue 22): the mailbox it reads or sends as, and only with a Microsoft
    client; no setting is kept that the channel would silently not use."""
    problems = []
    reads = value("mailbox_protocol") == "graph"
    sends = value("reply_via") == "graph"
    if reads and not value("graph_mailbox"):
        problems.append(
            "graph_mailbox (the user principal name or id of the mailbox) is required "
            "when mailbox_protocol is graph"
        )
    elif sends and not value("graph_mailbox"):
        problems.append("graph_mailbox (the mailbox replies are sent as) is required when reply_via is graph")
    if reads:
        unused = [name for name in POP3_SETTINGS if given(name)]
        if unused:
            problems.append(
                f"{', '.join(unused)}: not used when mailbox_protocol is graph (the mailbox is read "
                "through Microsoft Graph with the channel's OAuth client, not a POP3 login); remove them"
            )
    if not (reads or sends):
        unused = [name for name in GRAPH_SETTINGS if given(name)]
        if unused:
            problems.append(
                f"{', '.join(unused)}: used only when mailbox_protocol or reply_via is graph; remove them"
            )
    if not sends and given("save_to_sent_items"):
        problems.append("save_to_sent_items: used only when reply_via is graph; remove it")
    if (reads or sends) and value("oauth_provider") != "microsoft":
        what = "mailbox_protocol graph" if reads else "reply_via graph"
        problems.append(
            f"{what} needs oauth_provider microsoft (with oauth_tenant, oauth_client_id and "
            "oauth_secret): Microsoft Graph takes tokens of Microsoft Entra ID only"
        )
    return problems


def _login_problems(value: Callable[[str], Any]) -> list[str]:
    """How the channel logs in: a password, or an OAuth 2.0 token over TLS only."""
    problems = []
    graph = value("mailbox_protocol") == "graph" or value("reply_via") == "graph"
    pop3_oauth = value("mailbox_protocol") == "pop3" and value("pop3_login") == "oauth2"
    if value("mailbox_protocol") == "pop3" and not pop3_oauth and not value("pop3_password_secret"):
        problems.append("pop3_password_secret is required when pop3_login is password")
    if pop3_oauth and value("pop3_security") == "none":
        problems.append(
            "pop3_login oauth2 needs pop3_security tls or starttls: an access token is never sent unencrypted"
        )
    smtp_oauth = value("smtp_login") == "oauth2"
    if smtp_oauth and not value("smtp_auth"):
        problems.append("smtp_login oauth2 needs smtp_auth true")
    if (
        value("smtp_auth")
        and not smtp_oauth
        and not (value("smtp_username") and value("smtp_password_secret"))
    ):
        problems.append("smtp_username and smtp_password_secret are required when smtp_auth is true")
    if value("smtp_auth") and smtp_oauth and not value("smtp_username"):
        problems.append(
            "smtp_username (the mailbox replies are sent as) is required when smtp_login is oauth2"
        )
    if smtp_oauth and value("reply_via") == "smtp" and value("smtp_security") == "none":
        problems.append(
            "smtp_login oauth2 needs smtp_security starttls or tls: an access token is never sent unencrypted"
        )
    if (
        pop3_oauth
        or (smtp_oauth and value("smtp_auth") and value("reply_via") == "smtp")
        or (graph and value("oauth_provider") == "microsoft")
    ):
        problems += _oauth_client_problems(value)
    return problems


def _oauth_client_problems(value: Callable[[str], Any]) -> list[str]:
    provider = value("oauth_provider")
    if provider not in ("microsoft", "google", "generic"):
        return ["oauth_provider (microsoft, google or generic) is required when a login is oauth2"]
    needed = ["oauth_secret"]
    if provider == "microsoft":
        needed += ["oauth_tenant", "oauth_client_id"]
    if provider == "generic":
        needed += ["oauth_token_url", "oauth_client_id"]
    missing = [name for name in needed if not value(name)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return [f"{' and '.join(missing)} {verb} required when oauth_provider is {provider}"]
    return []


class InvalidChannel(ValueError):
    """An item that is not a usable channel; ``errors`` holds one ``(field, reason)`` per problem."""

    def __init__(self, channel_id: str, errors: list[tuple[str, str]]) -> None:
        self.channel_id = channel_id
        self.errors = errors
        listed = "; ".join(f"{field}: {reason}" for field, reason in errors)
        super().__init__(f"channel {channel_id} is not valid: {listed}")


def load_channel(item: Mapping[str, Any]) -> Channel:
    """Build a channel from a plain DynamoDB item, or raise ``InvalidChannel`` listing every error."""
    try:
        return Channel.model_validate(dict(item))
    except ValidationError as error:
        problems = [
            (".".join(str(part) for part in detail["loc"]) or "item", _reason(detail))
            for detail in error.errors(include_url=False, include_input=False)
        ]
        if not any(field == "item" for field, _ in problems):
            # pydantic skips the cross-field rules when a field is wrong; report them too
            problems += [
                ("item", problem)
                for problem in combination_problems(partial(_raw_value, item), partial(_raw_given, item))
            ]
        raise InvalidChannel(str(item.get("channel_id", "?")), problems) from None


def _raw_value(item: Mapping[str, Any], name: str) -> Any:
    if name in item:
        return item[name]
    default = Channel.model_fields[name].default
    return None if default is PydanticUndefined else default


def _raw_given(item: Mapping[str, Any], name: str) -> bool:
    return _set_apart_from_default(name, item.get(name))


def _set_apart_from_default(name: str, value: Any) -> bool:
    """The item sets ``name`` to something else than nothing or its default (a dumped model, which
    writes every default, sets nothing it did not mean)."""
    return value is not None and value != Channel.model_fields[name].default


def _is_https_url(value: str) -> bool:
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    blank = any(c.isspace() for c in value)
    return scheme.lower() == "https" and bool(host) and not blank and "@" not in host


def _reason(detail: Any) -> str:
    message = str(detail["msg"])
    return message.removeprefix("Value error, ")

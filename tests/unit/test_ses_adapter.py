"""The SES adapter's sorting of failures by whose they are (DESIGN §6), with a stand-in client."""

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from adapters.ses import SesReplySender
from domain.errors import ChannelFailure, ReplyTooLarge, TransientError, UndeliverableReply

REPLY = b"Subject: Re: x\r\n\r\nbody\r\n"
SES_LIMIT = 40 * 1024 * 1024  # SES API v2: 40 MB with attachments


class StandInSes:
    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.calls: list[dict[str, Any]] = []

    def send_email(self, **call: Any) -> None:
        self.calls.append(call)
        if self.failure is not None:
            raise self.failure


def client_error(code: str, status: int = 400, message: str = "") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message or f"{code} said so"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "SendEmail")


def test_the_stored_bytes_go_to_the_one_recipient() -> None:
    ses = StandInSes()

    SesReplySender(ses).send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert ses.calls == [
        {
            "FromEmailAddress": "a@b.example",
            "Destination": {"ToAddresses": ["c@d.example"]},
            "Content": {"Raw": {"Data": REPLY}},
        }
    ]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (client_error("MessageRejected"), UndeliverableReply),
        (client_error("TooManyRequestsException", 429), TransientError),
        (client_error("ThrottlingException"), TransientError),
        (client_error("InternalFailure", 500), TransientError),
        (EndpointConnectionError(endpoint_url="https://email.eu-central-1.amazonaws.com"), TransientError),
        (client_error("SendingPausedException"), ChannelFailure),
        (client_error("NotFoundException", 404), ChannelFailure),
        (client_error("AccessDeniedException", 403), ChannelFailure),
    ],
)
def test_failures_are_sorted_by_whose_they_are(failure: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected):
        SesReplySender(StandInSes(failure)).send(REPLY, sender="a@b.example", recipient="c@d.example")


def test_a_paused_account_names_the_setting() -> None:
    with pytest.raises(ChannelFailure) as raised:
        SesReplySender(StandInSes(client_error("SendingPausedException"))).send(
            REPLY, sender="a@b.example", recipient="c@d.example"
        )

    assert raised.value.setting == "sender_address"


def test_a_reply_over_ses_limit_is_refused_before_sending() -> None:
    ses = StandInSes()
    large = REPLY + b"x" * (SES_LIMIT + 1 - len(REPLY))

    with pytest.raises(ReplyTooLarge) as raised:
        SesReplySender(ses).send(large, sender="a@b.example", recipient="c@d.example")

    assert (raised.value.size, raised.value.limit) == (41_943_041, 41_943_040)
    assert ses.calls == []


def test_a_reply_of_exactly_ses_limit_is_sent() -> None:
    ses = StandInSes()

    SesReplySender(ses).send(b"x" * SES_LIMIT, sender="a@b.example", recipient="c@d.example")

    assert len(ses.calls) == 1


@pytest.mark.parametrize(
    ("code", "text", "limit"),
    [
        ("MessageRejected", "Message length is more than 10485760 bytes long: '12078147'.", 10_485_760),
        ("BadRequestException", "Message length is more than 41943040 bytes long: '41950000'.", 41_943_040),
        ("InvalidParameterValue", "Message size exceeds the maximum allowed", SES_LIMIT),
    ],
)
def test_ses_own_size_refusal_is_a_reply_too_large(code: str, text: str, limit: int) -> None:
    failure = client_error(code, message=text)

    with pytest.raises(ReplyTooLarge) as raised:
        SesReplySender(StandInSes(failure)).send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert (raised.value.size, raised.value.limit) == (len(REPLY), limit)
    assert text in str(raised.value)

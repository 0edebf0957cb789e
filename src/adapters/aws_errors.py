"""botocore failures sorted into our errors: throttling and network trouble are worth another try;
anything else (access denied, a missing table or bucket) is the deployment's failure, not a message's."""

from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from domain.errors import ChannelFailure, LetterShopError, TransientError

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalServerError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionConflictException",
    }
)

# What S3 answers for an object that is not there (``GetObject``: NoSuchKey; ``HeadObject``: 404).
S3_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})

DEPLOYMENT = "the stack (the function's role, its tables and buckets)"


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def s3_missing(error: ClientError) -> bool:
    """Whether S3 refused because the object does not exist."""
    return error_code(error) in S3_MISSING


def classify(error: Exception, what: str) -> LetterShopError:
    """The error to raise for a failed AWS call; ``what`` says which call, on which resource."""
    if isinstance(error, ClientError):
        code = error_code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TRANSIENT_CODES or status >= 500:
            return TransientError(f"{what}: {code or status} (will be retried)")
        return ChannelFailure(
            f"{what}: {code}: {error.response.get('Error', {}).get('Message', '')}", setting=DEPLOYMENT
        )
    if isinstance(error, ConnectionError | HTTPClientError | BotoCoreError):
        return TransientError(f"{what}: {error}")
    return ChannelFailure(f"{what}: {error}", setting=DEPLOYMENT)


def conditional(write: Callable[[], object], what: str) -> bool:
    """Run a conditional DynamoDB ``write``: False when its condition did not hold (nothing was
    written), True when it was written; any other failure is raised as ``classify`` sorts it."""
    try:
        write()
    except ClientError as error:
        if error_code(error) == "ConditionalCheckFailedException":
            return False
        raise classify(error, what) from error
    except BotoCoreError as error:
        raise classify(error, what) from error
    return True

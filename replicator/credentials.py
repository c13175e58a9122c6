"""Which credentials reach each side of a path: the default chain, a named profile, or an assumed role.

A replica in another account is reached with that account's credentials, so every client of a side (source,
destination, the lease table's ``kcl`` side, ``cloudwatch``, ``s3``) is built from that side's ``Credentials``:
a role ARN (with an optional external id) assumed through STS, and/or a named profile (the profile's
credentials, or the credentials the role is assumed from). This module is the one rule: the CLI, the daemon's
processors, ``status`` and the Lambda only pass the settings, under the same names everywhere
(``--destination-role-arn``, ``destinationRoleArn``, ``REPLICATOR_DESTINATION_ROLE_ARN``).

Assumed credentials are botocore's ``DeferredRefreshableCredentials`` over its ``AssumeRoleCredentialFetcher``:
botocore renews them before they expire (15 minutes ahead, blocking from 10 minutes ahead), so a path runs for
months on one-hour sessions. A role that cannot be assumed is one line naming the role and its option; the
credentials themselves (keys, tokens) are never logged or put in a message. A profile or role is a setting,
not a secret, and goes into the properties file; the external id does too (AWS documents it as not secret).

A role is assumed at AWS's STS endpoint of the side's region, or at ``AWS_ENDPOINT_URL_STS`` when it is set
(botocore and the Java SDK both read it), never at the side's own ``--*-endpoint``: that one serves DynamoDB,
S3 or CloudWatch (a VPC endpoint, a FIPS one) and not STS. The local server answers STS too, so a local
trial across accounts sets ``AWS_ENDPOINT_URL_STS`` to it (``local.sandbox`` does).

``REPLICATOR_CREDENTIALS_LIFETIME_S`` (tests only) treats assumed credentials as due for renewal that many
seconds after they were issued, so that a test sees a running path renew them; STS itself refuses sessions
shorter than 900 s.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import botocore.session
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, ProfileNotFound
from botocore.exceptions import ConnectionError as BotoConnectionError

from replicator.errors import ReplicatorError

SIDES = ("source", "destination", "kcl", "cloudwatch", "s3")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/[\w+=,.@/-]{1,512}$")
"""An IAM role ARN (IAM's own pattern for paths and names)."""
EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
"""STS's constraint on ExternalId."""
SESSION_NAME = "dynamodb-replicator"
LIFETIME_ENV = "REPLICATOR_CREDENTIALS_LIFETIME_S"
_ADVISORY_S = 15 * 60  # botocore's advisory refresh window (RefreshableCredentials)


class _OursSaidIt(logging.Filter):
    """botocore logs a failed refresh with its traceback before it raises; when the failure is ours (a
    ReplicatorError naming the role) the raised line says it all, and the traceback would only bury it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ReplicatorError))


logging.getLogger("botocore.credentials").addFilter(_OursSaidIt())


@dataclass(frozen=True)
class Credentials:
    """How one side is reached; all None is the default credential chain."""

    role_arn: str | None = None
    external_id: str | None = None
    profile: str | None = None

    @property
    def is_default(self) -> bool:
        return self.role_arn is None and self.profile is None

    @property
    def account(self) -> str | None:
        """The role's account, if a role is given."""
        match = ROLE_ARN.match(self.role_arn or "")
        return match["account"] if match else None

    def __str__(self) -> str:
        if self.role_arn:
            return f"role {self.role_arn}" + (f" (from profile {self.profile})" if self.profile else "")
        return f"profile {self.profile}" if self.profile else "the default credentials"


DEFAULT = Credentials()


def option_name(side: str | None, what: str) -> str:
    """How a message names a side's setting ``what`` (``role-arn``, ``endpoint``), the one rule for every
    room: ``destination`` is --destination-role-arn, "" the side-less --role-arn, an environment prefix
    (``REPLICATOR_DESTINATION``) the Lambda's variable, lambda-local's ``--destination`` its option, and
    None plain words ("role arn")."""
    if side is None:
        return what.replace("-", " ")
    if side == "":
        return f"--{what}"
    if side.isupper():
        return f"{side}_{what.upper().replace('-', '_')}"
    return f"{side}-{what}" if side.startswith("--") else f"--{side}-{what}"


def check(credentials: Credentials, side: str | None = None) -> None:
    """One ReplicatorError naming the option unless the settings are well formed (before any request)."""
    if credentials.role_arn is not None and not ROLE_ARN.match(credentials.role_arn):
        raise ReplicatorError(f"{option_name(side, 'role-arn')} {credentials.role_arn!r} is not an IAM role ARN: give one "
                              "like arn:aws:iam::222222222222:role/replicator")
    if credentials.external_id is not None:
        if credentials.role_arn is None:
            raise ReplicatorError(f"{option_name(side, 'external-id')} goes with {option_name(side, 'role-arn')}: give the role "
                                  "it is for, or drop it")
        if not EXTERNAL_ID.match(credentials.external_id):
            raise ReplicatorError(f"{option_name(side, 'external-id')} is not an external id: STS takes 2-1224 letters, "
                                  "digits and +=,.@:/-")
    if credentials.profile is not None and not credentials.profile.strip():
        raise ReplicatorError(f"{option_name(side, 'profile')} is empty: name a profile of ~/.aws/config, or drop it")


def of(values: dict[str, Any], side: str, *, fallback: Credentials = DEFAULT) -> Credentials:
    """A side's credentials from settings by field name (``destination_role_arn`` ...), or ``fallback``
    when the side names none of its own (the lease table and CloudWatch default to the source's)."""
    found = Credentials(values.get(f"{side}_role_arn") or None, values.get(f"{side}_external_id") or None,
                        values.get(f"{side}_profile") or None)
    return fallback if found == DEFAULT else found


class _Forgetful(dict):  # type: ignore[type-arg]
    """The fetcher's cache, kept empty: the refreshable credentials hold the current set themselves, and a
    cached response would hide a renewal."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _Assumed(CredentialProvider):  # type: ignore[misc]
    METHOD = "assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


TRANSIENT_STS_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable",
                                 "InternalFailure", "IDPCommunicationError"})


def transient(exc: ClientError) -> bool:
    """An STS answer worth asking again: throttling or a server error, not a refusal of the role. A path that
    ran for months must not stop on one slow renewal."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return exc.response.get("Error", {}).get("Code") in TRANSIENT_STS_CODES or status >= 500


def _refresher(fetcher: AssumeRoleCredentialFetcher, credentials: Credentials, side: str | None) -> Any:
    def refresh() -> dict[str, Any]:
        try:
            metadata: dict[str, Any] = fetcher.fetch_credentials()
        except (BotoConnectionError, HTTPClientError):
            raise  # STS unreachable for now: the request that needed the renewal is retried as any other is
        except ClientError as exc:
            if transient(exc):
                raise  # STS throttled or failed: retried (changes.writer.is_retryable), not a refused role
            error = exc.response.get("Error", {})
            raise ReplicatorError(
                f"cannot assume {option_name(side, 'role-arn')} {credentials.role_arn}: {error.get('Code')}: "
                f"{error.get('Message')}; check the role's trust policy (its principal and sts:ExternalId, "
                f"{option_name(side, 'external-id')}) and that these credentials may call sts:AssumeRole on it"
            ) from None
        except BotoCoreError as exc:
            raise ReplicatorError(f"cannot assume {option_name(side, 'role-arn')} {credentials.role_arn}: "
                                  f"{type(exc).__name__}: {exc}; check the credentials it is assumed with") from None
        lifetime = os.environ.get(LIFETIME_ENV)
        if lifetime:
            due = datetime.now(timezone.utc) + timedelta(seconds=_ADVISORY_S + float(lifetime))
            metadata["expiry_time"] = min(metadata["expiry_time"], due.isoformat())
        from replicator import log  # not at import: the Lambda and the tools configure logging themselves

        log.get("replicator.credentials").info("credentials_assumed", role=credentials.role_arn,
                                               side=side or "", expires=metadata["expiry_time"])
        return metadata

    return refresh


_sessions: dict[tuple[Credentials, str, str | None], boto3.session.Session] = {}
_lock = threading.Lock()


def session(credentials: Credentials, region: str, side: str | None = None) -> boto3.session.Session:
    """A boto3 session for a side: one per settings and region in this process, so that every client of a
    side shares one set of assumed credentials and one renewal."""
    check(credentials, side)
    key = (credentials, region, side)
    with _lock:
        found = _sessions.get(key)
        if found is None:
            found = _sessions[key] = _new_session(credentials, region, side)
        return found


def _new_session(credentials: Credentials, region: str, side: str | None) -> boto3.session.Session:
    try:
        base = botocore.session.Session(profile=credentials.profile)
        if credentials.profile is not None:
            base.get_scoped_config()  # a missing profile is refused here, before any request
    except ProfileNotFound:
        raise ReplicatorError(f"{option_name(side, 'profile')} {credentials.profile}: no such profile in the AWS config "
                              "files (~/.aws/config, ~/.aws/credentials): check its name") from None
    if credentials.role_arn is None:
        return boto3.session.Session(botocore_session=base)
    source = base.get_credentials()
    if source is None:
        from replicator.errors import CREDENTIALS_FIX

        raise ReplicatorError(f"no AWS credentials to assume {option_name(side, 'role-arn')} {credentials.role_arn} "
                              f"with: {CREDENTIALS_FIX}")
    extra: dict[str, Any] = {"RoleSessionName": SESSION_NAME}
    if credentials.external_id is not None:
        extra["ExternalId"] = credentials.external_id
    # No endpoint_url: AWS's STS endpoint of the region, or AWS_ENDPOINT_URL_STS (botocore reads it).
    creator = functools.partial(base.create_client, region_name=region)
    fetcher = AssumeRoleCredentialFetcher(creator, source, credentials.role_arn, extra_args=extra, cache=_Forgetful())
    assumed = DeferredRefreshableCredentials(refresh_using=_refresher(fetcher, credentials, side),
                                             method=_Assumed.METHOD)
    role_session = botocore.session.Session()
    role_session.register_component("credential_provider", CredentialResolver([_Assumed(assumed)]))
    return boto3.session.Session(botocore_session=role_session)


def client(credentials: Credentials, service: str, region: str, endpoint: str | None, config: Any,
           side: str | None = None) -> Any:
    """A client of ``service`` at ``endpoint`` (AWS's own if None) with the side's credentials."""
    if credentials.is_default:
        check(credentials, side)
        return boto3.session.Session().client(service, region_name=region, endpoint_url=endpoint, config=config)
    shared = session(credentials, region, side)
    with _lock:  # a boto3 session is not safe for clients made from several threads at once
        return shared.client(service, region_name=region, endpoint_url=endpoint, config=config)


def reset() -> None:
    """Forget the sessions (tests, and the Lambda's reset)."""
    with _lock:
        _sessions.clear()

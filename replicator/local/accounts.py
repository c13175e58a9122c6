"""Accounts on the local server: each account's tables apart, and STS that refuses as AWS's does.

moto keeps each account's resources apart and attributes a request to the account whose credentials signed
it: the local ``local`` keys belong to moto's default account (``DEFAULT_ACCOUNT``), and credentials its STS
issued for a role belong to the role's account (checked on moto 5.2.5). So a replica in account 222222222222
is a table that only credentials of a role in 222222222222 can see, as on AWS.

What moto's STS leaves out, and this module adds in the server's process (``install``): AssumeRole refuses a
role that does not exist, a caller whose account the role's trust policy does not name, and an external id
other than the one its ``sts:ExternalId`` condition asks for (AccessDenied, as AWS answers all three). A
role's permissions policies are not evaluated: a role that may be assumed may do anything in its account.

``create_role`` and ``account_credentials`` are the client side, for tests and the demo: IAM calls are made
in an account by moto's ``x-moto-account-id`` header, which stands in for that account's administrator.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.config import Config

DEFAULT_ACCOUNT = "123456789012"
"""moto's account for credentials it did not issue (the local server's ``local`` keys)."""
ACCOUNT_HEADER = "x-moto-account-id"


def _principal_accounts(principal: Any) -> list[str]:
    if principal == "*":
        return ["*"]
    values = principal.get("AWS", []) if isinstance(principal, dict) else []
    values = [values] if isinstance(values, str) else values
    found = []
    for value in values:
        found.append("*" if value == "*" else value.split(":")[4] if value.startswith("arn:") else value)
    return found


def refusal(trust_policy: str | dict[str, Any], caller_account: str, external_id: str | None) -> str | None:
    """Why the trust policy refuses ``caller_account`` with ``external_id``, or None if a statement allows it."""
    document = json.loads(unquote(trust_policy)) if isinstance(trust_policy, str) else trust_policy
    statements = document.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") != "Allow" or not {"sts:AssumeRole", "sts:*", "*"} & set(actions):
            continue
        accounts = _principal_accounts(statement.get("Principal", {}))
        if "*" not in accounts and caller_account not in accounts:
            continue
        wanted = statement.get("Condition", {}).get("StringEquals", {}).get("sts:ExternalId")
        if wanted is not None and external_id != wanted:
            return "the external id does not match the role's trust policy"
        return None
    return f"the role's trust policy does not trust account {caller_account}"


def install() -> None:
    """Make the server's STS AssumeRole check the role, its trust policy and the external id."""
    from moto.iam.models import iam_backends
    from moto.iam.exceptions import NotFoundException
    from moto.sts.exceptions import STSClientError
    from moto.sts.models import STSBackend

    original = STSBackend.assume_role
    if getattr(original, "_checks_trust", False):
        return

    def assume_role(self: Any, region_name: str, role_session_name: str, role_arn: str, policy: str,
                    duration: int, external_id: str) -> Any:
        denied = f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        parts = role_arn.split(":")
        if len(parts) < 6:
            raise STSClientError("AccessDenied", denied)
        try:
            role = iam_backends[parts[4]]["aws"].get_role_by_arn(role_arn)
        except NotFoundException:
            raise STSClientError("AccessDenied", f"{denied} (no such role)") from None
        why = refusal(role.assume_role_policy_document, self.account_id, external_id)
        if why:
            raise STSClientError("AccessDenied", f"{denied} ({why})")
        return original(self, region_name, role_session_name, role_arn, policy, duration, external_id)

    assume_role._checks_trust = True  # type: ignore[attr-defined]
    STSBackend.assume_role = assume_role


def _in_account(client: Any, account: str) -> Any:
    def add_header(request: Any, **_: Any) -> None:
        request.headers[ACCOUNT_HEADER] = account

    client.meta.events.register("before-sign.*.*", add_header)
    return client


def iam_client(endpoint: str, account: str) -> Any:
    """An IAM client acting in ``account`` (its administrator, in effect)."""
    client = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local").client(
        "iam", region_name="us-east-1", endpoint_url=endpoint, config=Config(retries={"total_max_attempts": 3}))
    return _in_account(client, account)


def trust_policy(trusted_account: str, external_id: str | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{trusted_account}:root"},
                                 "Action": "sts:AssumeRole"}
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def create_role(endpoint: str, account: str, name: str, trusted_account: str, external_id: str | None = None) -> str:
    """A role in ``account`` that ``trusted_account`` may assume (with ``external_id``, if given); its ARN."""
    iam = iam_client(endpoint, account)
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        pass
    created = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust_policy(trusted_account,
                                                                                              external_id)))
    return str(created["Role"]["Arn"])


def account_credentials(endpoint: str, account: str) -> dict[str, str]:
    """Environment variables of credentials in ``account``: a session of its role ``local-admin``."""
    arn = create_role(endpoint, account, "local-admin", DEFAULT_ACCOUNT)
    sts = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local").client(
        "sts", region_name="us-east-1", endpoint_url=endpoint)
    issued = sts.assume_role(RoleArn=arn, RoleSessionName="local-admin")["Credentials"]
    return {"AWS_ACCESS_KEY_ID": issued["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": issued["SecretAccessKey"],
            "AWS_SESSION_TOKEN": issued["SessionToken"]}

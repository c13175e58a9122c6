"""`make lambda` builds a zip that runs on its own: unpacked, in a clean Python 3.11 virtualenv with nothing
installed, its handler imports and replicates an event into the local server. The template passes cfn-lint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from replicator.local.server import LocalServer, use_local_credentials

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "deploy" / "lambda.yaml"

INVOKE = """
import json, sys
from replicator.lambda_handler import handler
event = json.loads(sys.stdin.read())
print(json.dumps(handler(event, None)))
"""


def test_the_zip_imports_and_replicates_in_a_clean_python(tmp_path: Path) -> None:
    built = subprocess.run(["make", "lambda"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    package = tmp_path / "task"
    with zipfile.ZipFile(REPO_ROOT / "dist" / "replicator-lambda.zip") as archive:
        names = archive.namelist()
        archive.extractall(package)
    assert "replicator/lambda_handler/__init__.py" in names
    assert not any(n.startswith(("moto/", "pytest/", "amazon_kclpy/", "_pytest/")) for n in names)

    env_dir = tmp_path / "clean"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    assert subprocess.run([python, "-c", "import boto3"], capture_output=True).returncode != 0  # truly empty

    use_local_credentials()
    with LocalServer(log_path=tmp_path / "server.log") as server:
        client = server.client("eu-west-1")
        client.create_table(TableName="replica", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        event = {"Records": [{
            "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-30T00:00:00.000",
            "dynamodb": {"ApproximateCreationDateTime": 1764460800, "Keys": {"pk": {"S": "a"}},
                         "NewImage": {"pk": {"S": "a"}, "n": {"N": "12345678901234567890123456789012345678"}},
                         "SequenceNumber": "100", "SizeBytes": 20, "StreamViewType": "NEW_AND_OLD_IMAGES"}}]}
        env = {"PYTHONPATH": str(package), "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "REPLICATOR_DESTINATION_TABLE": "replica",
               "REPLICATOR_DESTINATION_REGION": "eu-west-1", "REPLICATOR_DESTINATION_ENDPOINT": server.endpoint}
        ran = subprocess.run([python, "-c", INVOKE], input=json.dumps(event), capture_output=True, text=True,
                             env=env, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout.strip().splitlines()[-1]) == {"batchItemFailures": []}
        item = client.get_item(TableName="replica", Key={"pk": {"S": "a"}}, ConsistentRead=True)["Item"]
        assert item["n"] == {"N": "12345678901234567890123456789012345678"}


def test_the_template_passes_cfn_lint_and_wires_the_handler_for_partial_failures() -> None:
    lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    resources = yaml.safe_load(TEMPLATE.read_text())["Resources"]
    function = resources["Function"]["Properties"]
    assert function["Handler"] == "replicator.lambda_handler.handler" and function["Runtime"] == "python3.11"
    mapping = resources["EventSourceMapping"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "OnFailure" in mapping["DestinationConfig"]
    statements = resources["Role"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    flat = [s["Fn::If"][1] if "Fn::If" in s else s for s in statements]
    assert not any(s["Action"] in ("*", "dynamodb:*") or s.get("Resource") == "*" and "List" not in str(s["Action"])
                   for s in flat)

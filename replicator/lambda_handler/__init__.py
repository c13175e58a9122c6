"""The Lambda shell: ``replicator.lambda_handler.handler`` runs the ``changes`` core on a DynamoDB Streams
or Kinesis event and reports partial batch failures, so that the event source mapping (which keeps the
checkpoints) retries from the first record not durable. It imports only ``changes`` and the top level.
"""

from replicator.lambda_handler.function import handler

__all__ = ["handler"]

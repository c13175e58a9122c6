"""Changes: a batch of stream records to durable writes in the destination.

Decoders turn each record format into ``Change`` objects (``codec``), ``squash`` keeps the last change per
key, and the ``applier`` hands them to the ``writer`` (BatchWriteItem with retries) or, with a version
attribute, to the fenced writer of ``versions``. Every shell (the KCL record processor, the Lambda handler)
runs this same core. It imports only the top-level ``clients``, ``errors`` and ``log``.
"""

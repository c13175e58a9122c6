"""Tables and the tools that work on whole tables or single items.

``spec`` parses ``region/table`` and keys; ``copy``, ``diff``, ``records``, ``bootstrap`` and ``compare``
are the copy, consistency and bootstrap tools; ``backup`` and ``restore`` write a table to S3 or a
directory (``store``) in DynamoDB's export format and back. They write through ``changes``' writer and
start paths through ``kcl``; nothing here is imported by those lower rooms.
"""

"""Near-real-time DynamoDB table replication on DynamoDB Streams and the KCL MultiLangDaemon."""

__version__ = "0.1.0"

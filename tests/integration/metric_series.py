"""Reading a path's own metrics back from the local server's CloudWatch, as a user's dashboard or alarm would."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from replicator.kcl import metrics


def series(cloudwatch: Any, dims: list[dict[str, str]], name: str, stat: str, since: datetime,
           period: int = 1) -> list[tuple[datetime, float]]:
    """(timestamp, value) of one metric of the path, oldest first."""
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "q", "MetricStat": {"Metric": {"Namespace": metrics.NAMESPACE, "MetricName": name,
                                                                 "Dimensions": dims},
                                                      "Period": period, "Stat": stat}}],
        StartTime=since, EndTime=datetime.now(timezone.utc) + timedelta(minutes=1), ScanBy="TimestampAscending",
    )
    result = answer["MetricDataResults"][0]
    return list(zip(result["Timestamps"], result["Values"]))

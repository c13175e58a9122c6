"""The lag picture: every probe's replication lag over time, with the source write rate on a second axis.

A percentile says how bad the tail is; the picture says when: whether lag follows the write rate, grows
(a path falling behind) or spikes at moments (a slow batch, a pause of the server). Drawn with matplotlib's
non-interactive Agg backend, so it needs no display.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def draw(path: Path, sampled_at: list[float], lag_ms: list[float], write_times_ms: list[int], title: str) -> Path:
    """Write a PNG to ``path``: lag (ms) per probe, and writes per second, both against seconds from the start."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    start = min([*sampled_at, *(t / 1000 for t in write_times_ms)])
    per_second = Counter(int(t / 1000 - start) for t in write_times_ms)
    seconds = range(max(per_second, default=0) + 1)

    figure, lag_axis = pyplot.subplots(figsize=(10, 4.5), dpi=100)
    rate_axis = lag_axis.twinx()
    rate_axis.fill_between(seconds, [per_second.get(s, 0) for s in seconds], step="post", color="tab:gray",
                           alpha=0.25, label="source writes/s")
    rate_axis.set_ylabel("source writes per second")
    rate_axis.set_ylim(bottom=0)
    lag_axis.plot([t - start for t in sampled_at], lag_ms, ".-", color="tab:blue", linewidth=0.8, markersize=4,
                  label="replication lag (each probe)")
    lag_axis.set_xlabel("seconds")
    lag_axis.set_ylabel("lag: source write to destination visibility (ms)")
    lag_axis.set_ylim(bottom=0)
    lag_axis.set_zorder(rate_axis.get_zorder() + 1)
    lag_axis.patch.set_visible(False)
    handles = lag_axis.get_legend_handles_labels()[0] + rate_axis.get_legend_handles_labels()[0]
    lag_axis.legend(handles=handles, loc="upper left")
    lag_axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return path

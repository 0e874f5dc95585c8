"""Render template.yaml's CloudWatch dashboard from `handler.cli.panels.PANELS`.

Usage: python -m scripts.dashboard   (`make dashboard`) rewrites the block between the markers.

The body is one JSON string for CloudFormation: `Fn::Sub` fills in the region and the names of
the stack's functions and queues, and the queued-mode widgets sit inside `Fn::If [IsQueued, …]`
(their resources exist only then). tests/test_template.py fails when the block is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from handler.cli.panels import PANELS, PERIOD_S, Panel

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
BEGIN = "  # --- Dashboard: rendered by `make dashboard` from handler/cli/panels.py; edit those, not this ---"
END = "  # --- end Dashboard ---"
WIDTH, HEIGHT, COLUMNS = 8, 6, 3  # the dashboard grid is 24 units wide


def widget(panel: Panel, position: int) -> str:
    """One metric widget as a line of JSON, placed at `position` in a three-column grid."""
    lines = []
    for metric in panel.metrics:
        dimension, value = metric.dimension
        options = {"stat": metric.stat, "label": metric.label}
        lines.append([metric.namespace, metric.name, dimension, value, options])
    body = {
        "type": "metric",
        "x": position % COLUMNS * WIDTH,
        "y": position // COLUMNS * HEIGHT,
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": panel.title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "stacked": False,
            "period": PERIOD_S,
            "metrics": lines,
        },
    }
    return json.dumps(body)


def _sub_block(opening: str, widgets: list[str], indent: int) -> str:
    """The lines of a `!Sub |-` block: `opening`, then the widgets separated by commas."""
    lines = [opening] + [w + "," for w in widgets[:-1]] + widgets[-1:]
    return "\n".join(" " * indent + line for line in lines)


def render() -> str:
    """The template block: the Dashboard resource between the two marker lines."""
    always = [p for p in PANELS if not p.queued_only]
    queued = [p for p in PANELS if p.queued_only]
    first = [widget(p, i) for i, p in enumerate(always)]
    more = [widget(p, i) for i, p in enumerate(queued, start=len(always))]
    return "\n".join(
        [
            BEGIN,
            "  Dashboard:",
            "    Type: AWS::CloudWatch::Dashboard",
            "    Properties:",
            "      DashboardName: !Ref AWS::StackName",
            "      DashboardBody: !Join",
            '        - ""',
            "        - - !Sub |-",
            _sub_block('{"widgets": [', first, 12),
            "          - !If",
            "            - IsQueued",
            "            - !Sub |-",
            _sub_block(",", more, 14),
            '            - ""',
            '          - "]}"',
            END,
        ]
    )


def main() -> int:
    """Rewrite the block in template.yaml; 1 when its markers are missing."""
    text = TEMPLATE.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        print(f"{TEMPLATE}: the dashboard markers are missing", file=sys.stderr)
        return 1
    TEMPLATE.write_text(text[:start] + render() + text[end + len(END) :], encoding="utf-8")
    print(f"{TEMPLATE}: dashboard rendered from {len(PANELS)} panels")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `dockyard describe logdrain NAME` shows beyond the common fields."""

from __future__ import annotations

from dockyard.cli.output import age


def describe_logdrain(spec: dict, status: dict) -> list[str]:
    """Destination, filters and delivery counters. Header values are not shown: they usually
    carry credentials (the API returns them to maintainers, the terminal need not)."""
    out = [f"Type:         {spec.get('type')}",
           f"URL:          {spec.get('url')}",
           f"Apps:         {', '.join(spec.get('apps') or []) or '<all>'}",
           f"Labels:       {', '.join(f'{k}={v}' for k, v in (spec.get('labels') or {}).items()) or '<none>'}",
           f"Headers:      {', '.join(spec.get('headers') or {}) or '<none>'}",
           f"Paused:       {'yes' if spec.get('paused') else 'no'}",
           f"Sent:         {status.get('sentLines', 0)} lines, last {age(status.get('lastSentAt'))} ago"
           if status.get("lastSentAt") else f"Sent:         {status.get('sentLines', 0)} lines"]
    if status.get("droppedLines"):
        out.append(f"Dropped:      {status['droppedLines']} lines the destination refused as malformed")
    if status.get("lastError"):
        out.append(f"Last error:   {status['lastError']} ({age(status.get('lastErrorAt'))} ago)")
    return out

import json
import sys


def handler(event, context):
    """A Lambda-style Python handler; through /fn/NAME the event is a
    function URL request (payload 2.0)."""
    path = event.get("rawPath") if isinstance(event, dict) else None
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"example": "python", "python": sys.version.split()[0], "path": path}),
    }

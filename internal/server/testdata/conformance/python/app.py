# The conformance protocol (see ../README.md) as a Python handler.
import base64
import hashlib
import json


def handler(event, context):
    path = event.get("rawPath")
    if path == "/echo":
        h = event.get("headers") or {}
        q = event.get("queryStringParameters") or {}
        b64 = event.get("isBase64Encoded") is True
        body = event.get("body") or ""
        raw = base64.b64decode(body) if b64 else body.encode("utf-8")
        desc = {
            "method": event["requestContext"]["http"]["method"],
            "path": path,
            "rawQuery": event.get("rawQueryString", ""),
            "query": [q["a"]] if "a" in q else [],
            "multi": [h["x-multi"]] if "x-multi" in h else [],
            "single": h.get("x-single", ""),
            "contentType": h.get("content-type", ""),
            "cookies": event.get("cookies") or [],
            "bodyLen": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "base64": b64,
        }
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(desc)}
    if path == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode("ascii"), "isBase64Encoded": True}
    if path == "/cookies":
        return {"statusCode": 200, "cookies": ["c1=v1; Path=/", "c2=v2; HttpOnly"], "body": "{}"}
    if path == "/text":
        return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "plain text, not JSON"}
    if path == "/status-only":
        return {"statusCode": 204}
    if path == "/plain":
        return "just a string"
    return {"statusCode": 404, "body": "no such path"}

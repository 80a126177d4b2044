#!/usr/bin/env python3
"""Parse a MIME message from stdin with Python's `email` package and print it as JSON.

Used by outbox-mime's round-trip tests as an independent parser of what Outbox composes:
{"headers": {name: decoded value, ...}, "from": [[name, addr]], "to": [...], "cc": [...],
 "structure": "multipart/mixed(multipart/alternative(text/plain,text/html),image/png)",
 "parts": [{"content_type", "filename", "content_id", "disposition", "text" | "base64"}],
 "defects": [...]}
"""
import base64
import json
import sys
from email import policy
from email.parser import BytesParser


def structure(part):
    if part.is_multipart():
        inner = ",".join(structure(p) for p in part.iter_parts())
        return f"{part.get_content_type()}({inner})"
    return part.get_content_type()


def main():
    raw = sys.stdin.buffer.read()
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    out = {"headers": {}, "structure": structure(msg), "parts": [], "defects": []}
    for name, value in msg.items():
        out["headers"].setdefault(name.lower(), str(value))
    for field in ("from", "to", "cc", "reply-to", "sender"):
        out[field] = [
            [address.display_name, address.addr_spec]
            for header in msg.get_all(field, [])
            for address in header.addresses
        ]
    for part in msg.walk():
        out["defects"].extend(type(d).__name__ for d in part.defects)
        if part.is_multipart():
            continue
        item = {
            "content_type": part.get_content_type(),
            "filename": part.get_filename(),
            "content_id": part.get("Content-ID"),
            "disposition": part.get_content_disposition(),
            "charset": part.get_content_charset(),
        }
        if part.get_content_maintype() == "text" and item["disposition"] != "attachment":
            item["text"] = part.get_content()
        else:
            item["base64"] = base64.b64encode(part.get_payload(decode=True) or b"").decode()
        out["parts"].append(item)
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()

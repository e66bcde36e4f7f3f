#!/usr/bin/env python3
"""Captures every AdminServer command of a running server as JSON files.

Usage: capture.py BASE_URL OUT_DIR   (BASE_URL like http://127.0.0.1:8080/commands)

The command list is read from BASE_URL itself (its links), so the capture holds every
command that server lists.
"""
import json
import os
import re
import sys
import urllib.error
import urllib.request


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    base, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    _, page = get(base)
    names = re.findall(r'<a href="[^"]*/([a-z_]+)">', page)
    with open(os.path.join(out, "commands.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    for n in names:
        status, body = get(f"{base}/{n}")
        doc = json.loads(body)
        with open(os.path.join(out, f"{n}.json"), "w") as f:
            json.dump({"status": status, "body": doc}, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()

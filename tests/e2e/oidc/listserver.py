"""A revocation-list URL for the e2e tests: serves one file on loopback with a strong
ETag (its SHA-256), answers 304 to a matching If-None-Match, and logs each request's
status and If-None-Match as a JSON line so the test can see what the fetcher sent.

    python3 listserver.py PORT FILE LOG
"""

from __future__ import annotations

import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

PORT, FILE, LOG = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = FILE.read_bytes()
        tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        status = 304 if self.headers.get("If-None-Match") == tag else 200
        with LOG.open("a") as fh:
            fh.write(json.dumps({"status": status,
                                 "if_none_match": self.headers.get("If-None-Match")}) + "\n")
        self.send_response(status)
        self.send_header("ETag", tag)
        self.send_header("Content-Length", "0" if status == 304 else str(len(body)))
        self.end_headers()
        if status == 200:
            self.wfile.write(body)


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()

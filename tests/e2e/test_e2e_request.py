"""Access requests: who may ask. (The approve path is test_e2e_requests.py.)"""

from __future__ import annotations

import json

from jithost import Host


def test_request_by_someone_not_a_requester_is_refused(host: Host) -> None:
    proc = host.box.run(["jit", "request", "docker", "--for", "10m", "--reason",
                         "not mine to ask", "--json"], user="carol", check=False)
    answer = json.loads(proc.stdout)
    assert (proc.returncode, answer["code"]) == (1, "not_requester"), answer

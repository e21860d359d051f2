"""Run one PAM transaction through pam_wrapper (started by pamstack.py with LD_PRELOAD):
argv[1] is a JSON object {user, service, steps: [[operation, expected return]]}. Prints
one JSON line: {pid, ok, info, errors} or {pid, ok: false, error} (pypamtest's message
names the code that came back instead). With "hold": true in the job the process then
stays (its PAM session with it, as a logged-in user's) until its stdin closes."""

import json
import os
import sys

import pypamtest

OPS = {"account": pypamtest.PAMTEST_ACCOUNT, "open_session": pypamtest.PAMTEST_OPEN_SESSION,
       "close_session": pypamtest.PAMTEST_CLOSE_SESSION}

job = json.loads(sys.argv[1])
cases = [pypamtest.TestCase(OPS[op], rv) for op, rv in job["steps"]]
try:
    r = pypamtest.run_pamtest(job["user"], job["service"], cases)
    out = {"ok": True, "info": list(r.info), "errors": list(r.errors)}
except pypamtest.PamTestError as exc:
    out = {"ok": False, "error": str(exc)}
print(json.dumps(dict(out, pid=os.getpid())), flush=True)
if job.get("hold"):
    sys.stdin.read()

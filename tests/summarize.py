"""
Run trial and end with the line "N passed, N failed" that CI reads.

Trial's own summary ("PASSED (successes=12)", "FAILED (failures=1,
errors=2, successes=9)") is kept; the line is added after it.  The exit
status is trial's.
"""

import re
import subprocess
import sys


def main(argv):
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    summary = None
    for line in process.stdout:
        sys.stdout.write(line)
        if re.match(r"^(PASSED|FAILED) \(", line):
            summary = line
    status = process.wait()
    counts = dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", summary or ""))
    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpectedSuccesses", 0)
    if summary is None or (status != 0 and failed == 0):
        failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

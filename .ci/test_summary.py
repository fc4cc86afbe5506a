#!/usr/bin/env python3
"""Add up test cases over meson's testlog*.json files.

Prints one line, `tests: N passed, N failed, N skipped`, and exits 1 if any
failed.  Counts what each test binary reports:
  - Criterion in TAP mode: one `ok` / `not ok` line per case;
  - the shim harness (tests/harness.h): `<exe>: N passed, N failed, N skipped`;
  - anything else (scripts): one case, from meson's verdict.
A binary that reports every case passed but still failed in meson's eyes
(a sanitizer report at exit, valgrind's error exit code, a crash after the
last case) counts one more failure.
"""
import json
import re
import sys

SHIM = re.compile(r': (\d+) passed, (\d+) failed, (\d+) skipped\s*$', re.M)
passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path) as fh:
        for line in fh:
            t = json.loads(line)
            out = t.get('stdout') or ''
            ok = t.get('result') in ('OK', 'EXPECTEDFAIL')
            if re.search(r'^(ok|not ok)\b', out, re.M):
                p = f = s = 0
                for l in out.splitlines():
                    if l.startswith('not ok'):
                        f += 1
                    elif l.startswith('ok'):
                        if '# SKIP' in l:
                            s += 1
                        else:
                            p += 1
            elif SHIM.search(out):
                p, f, s = map(int, SHIM.findall(out)[-1])
            else:
                p, f, s = (1, 0, 0) if ok else ((0, 0, 1) if t.get('result') == 'SKIP' else (0, 1, 0))
            if not ok and f == 0 and t.get('result') != 'SKIP':
                f += 1
                print(f"failed after its cases passed: {t.get('name')} ({t.get('result')})",
                      file=sys.stderr)
            passed += p
            failed += f
            skipped += s
print(f'tests: {passed} passed, {failed} failed, {skipped} skipped')
sys.exit(1 if failed else 0)

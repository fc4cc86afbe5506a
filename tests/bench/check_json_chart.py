#!/usr/bin/env python3
"""ftrt-bench's --json and --chart outputs, end to end (meson test
bench-json-chart-smoke): runs the driver at --smoke size on a few workloads
and checks
  - the JSON document parses and follows schema ftrt-bench/1: the top-level
    keys, the environment, every measurement's keys, both builds, raw
    samples, the stop-the-world histograms, anchors and targets;
  - the SVG is a well-formed XML document with an <svg> root, a scaling panel
    and the stop-the-world histogram;
  - without its data files (FTRT_BENCH_DATA_DIR pointing at an empty
    directory) the driver notes it on stderr and still succeeds;
  - outside --smoke (one --quick round of stw) the GIL build's
    stop-the-world measures, which have nothing to measure, are not run.
Nothing timed is asserted.
usage: check_json_chart.py FTRT_BENCH
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

bench = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def run(args, env=None, mode='--smoke'):
    r = subprocess.run([bench, mode] + args, capture_output=True, text=True,
                       env=env, timeout=600)
    # exit status 1 with the smoke summary: a measurement that produced no
    # positive number (on an overloaded machine a 5 ms sample can count no
    # operation); bench-smoke judges that, this test the files
    smoke_only = r.returncode == 1 and '\nsmoke: ' in r.stdout
    if smoke_only:
        print('note: the smoke check failed, the files are checked anyway:\n'
              + '\n'.join(l for l in r.stdout.splitlines() if l.startswith('smoke: ')))
    if r.returncode != 0 and not smoke_only:
        sys.exit(f'FAIL: ftrt-bench {" ".join(args)} exited {r.returncode}\n'
                 f'{r.stdout[-2000:]}\n{r.stderr[-2000:]}')
    return r


MEASUREMENT_KEYS = {'workload', 'measure', 'subject', 'label', 'unit', 'higher_is_better',
                    'threads', 'build', 'samples', 'median', 'min', 'max'}
ENVIRONMENT_KEYS = {'date', 'cores', 'cpu_model', 'kernel', 'os', 'ftrt_version',
                    'allocator', 'build', 'mode', 'rounds', 'threads', 'workloads',
                    'command', 'sampling'}

with tempfile.TemporaryDirectory() as tmp:
    js, svg = os.path.join(tmp, 'r.json'), os.path.join(tmp, 'r.svg')
    r = run(['--workload', 'mutex,listbuild,stw', '--threads', '1,2',
             '--json', js, '--chart', svg])
    with open(js) as f:
        doc = json.load(f, parse_constant=lambda c: failures.append(f'JSON has {c}'))
    check(doc.get('schema') == 'ftrt-bench/1', f'schema {doc.get("schema")!r}')
    want = {'schema', 'environment', 'busy', 'measurements', 'ratios', 'histograms',
            'anchors', 'targets'}
    check(want <= doc.keys(), f'top-level keys {sorted(doc.keys())}')
    env = doc.get('environment', {})
    check(ENVIRONMENT_KEYS <= env.keys(), f'environment lacks {ENVIRONMENT_KEYS - env.keys()}')
    check(isinstance(env.get('cores'), int) and env['cores'] >= 1, f'cores {env.get("cores")}')
    check(env.get('mode') == 'smoke' and env.get('threads') == [1, 2],
          f'mode {env.get("mode")}, threads {env.get("threads")}')
    check(set(env.get('allocator', {})) == {'ft', 'gil'}, 'allocator per build')
    check('other_cpu_share' in doc.get('busy', {}), 'busy.other_cpu_share')

    ms = doc.get('measurements', [])
    check(len(ms) > 0, 'no measurements')
    for m in ms:
        if not check(MEASUREMENT_KEYS <= m.keys(), f'measurement lacks {MEASUREMENT_KEYS - m.keys()}'):
            break
        check(m['build'] in ('ft', 'gil'), f'build {m["build"]}')
        check(len(m['samples']) >= 1 and all(isinstance(x, (int, float)) for x in m['samples']),
              f'samples {m["samples"]}')
    keys = {(m['workload'], m['measure'], m['subject'], m['threads']) for m in ms}
    for k in [('mutex', 'uncontended', 'pymutex', 1), ('mutex', 'contended', 'pymutex', 2),
              ('listbuild', 'threads', 'private', 2), ('stw', 'busy', 'p50', 3)]:
        builds = {m['build'] for m in ms
                  if (m['workload'], m['measure'], m['subject'], m['threads']) == k}
        check(builds == {'ft', 'gil'}, f'{k}: builds {builds}')
    for m in ms:
        if m['workload'] == 'mutex' and m['measure'] == 'uncontended':
            check(m['higher_is_better'] is False and m['unit'] == 'ns/op', f'{m}')
            check(m['median'] > 0 and m['min'] <= m['median'] <= m['max'], f'stats {m}')
    check(any(x['subject'] == 'pymutex' and x['baseline'] == 'pthread'
              for x in doc.get('ratios', [])), 'no pymutex/pthread ratio')
    hs = [h for h in doc.get('histograms', [])
          if (h['workload'], h['measure'], h['subject'], h['threads'], h['build'])
          == ('stw', 'busy', 'to_stop', 3, 'ft')]
    if check(len(hs) == 1, 'no stw busy T=3 free-threaded histogram'):
        h = hs[0]
        check(len(h['lower']) == len(h['counts']) and sum(h['counts']) > 0,
              f'histogram {h}')
        check(h['lower'] == sorted(h['lower']), 'histogram buckets not ascending')
    check(any(a['workload'] == 'mutex' and a['build'] == 'ft' and math.isclose(a['value'], 5.42)
              for a in doc.get('anchors', [])), 'no mutex anchor (anchors.tsv not found?)')
    ts = doc.get('targets', [])
    check(len(ts) > 0 and all({'text', 'build', 'value', 'met', 'status'} <= t.keys()
                              for t in ts), 'targets')
    check(f'json: {js}' in r.stdout and f'chart: {svg}' in r.stdout, 'report names its files')

    with open(svg) as f:
        text = f.read()
    check(text.lstrip().startswith(('<?xml', '<svg')), 'SVG does not start with <?xml or <svg')
    check(text.rstrip().endswith('</svg>'), 'SVG does not end with </svg>')
    try:
        root = ET.fromstring(text)
        check(root.tag.endswith('svg'), f'root element {root.tag}')
        words = ' '.join(t for t in root.itertext())
        check('listbuild' in words, 'no listbuild scaling panel')
        check('time to stop' in words, 'no stop-the-world histogram')
    except ET.ParseError as e:
        failures.append(f'SVG is not well-formed XML: {e}')

    # no data files: a note, no anchors, still a success
    empty = os.path.join(tmp, 'empty')
    os.mkdir(empty)
    js2 = os.path.join(tmp, 'r2.json')
    r = run(['--workload', 'mutex', '--threads', '1', '--json', js2],
            env=dict(os.environ, FTRT_BENCH_DATA_DIR=empty))
    check('no anchors.tsv' in r.stderr and 'no targets.tsv' in r.stderr,
          f'no note about the missing data files: {r.stderr[-500:]}')
    with open(js2) as f:
        doc2 = json.load(f)
    check(doc2['anchors'] == [] and doc2['targets'] == [], 'anchors without a data file')
    check(doc2['environment']['reference_data']['anchors'] is None, 'reference_data.anchors')

    # outside --smoke the GIL build's stop-the-world rows (it has no stops)
    # are not run: the free-threaded rows only, and the runs counted so
    js3 = os.path.join(tmp, 'r3.json')
    r = run(['--rounds', '1', '--workload', 'stw', '--threads', '1', '--json', js3],
            mode='--quick')
    with open(js3) as f:
        doc3 = json.load(f)
    stw_builds = {m['build'] for m in doc3['measurements'] if m['workload'] == 'stw'}
    check(stw_builds == {'ft'}, f'--quick stw rows of builds {stw_builds}, want ft only')
    check(doc3['environment'].get('worker_runs') == 2,
          f'--quick stw: {doc3["environment"].get("worker_runs")} worker runs, want 2')
    check('ftrt-bench: 2 worker runs' in r.stderr, f'run count on stderr: {r.stderr[-300:]}')

for f in failures:
    print('FAIL:', f)
print(f'{len(failures)} failures' if failures else 'json and chart: OK')
sys.exit(1 if failures else 0)

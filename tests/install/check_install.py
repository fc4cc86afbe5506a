#!/usr/bin/env python3
"""Install the build into a scratch DESTDIR and use it as a consumer would.

Checks, for both pkg-config modules (ftrt, ftrt-gil):
  - `pkg-config --cflags --libs` is all a consumer needs to compile and link
    examples/counter.c against the installed headers and library;
  - the free-threaded module's pyconfig.h defines Py_GIL_DISABLED and the GIL
    module's does not (the program prints which build it was compiled for);
  - the library exports only the public API (Py*, _Py*, PY*) and the
    exported slow paths of inline functions (ft_*_slow), nothing internal;
  - installed executables that link libftrt carry an rpath to the installed
    libdir, and the installed ftrt-bench runs the installed workers;
  - the benchmark's reference data (anchors.tsv, targets.tsv) is installed
    in datadir/ftrt, where the installed ftrt-bench finds it by itself
    (relative to its own bindir, so also under the DESTDIR).
usage: check_install.py BUILD_DIR SOURCE_DIR
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

build, source = sys.argv[1], sys.argv[2]
failures = []


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


with tempfile.TemporaryDirectory() as dest:
    run(['meson', 'install', '-C', build, '--no-rebuild', '--quiet', '--destdir', dest])
    pcs = glob.glob(os.path.join(dest, '**', 'pkgconfig', 'ftrt.pc'), recursive=True)
    if len(pcs) != 1:
        sys.exit(f'FAIL: expected one installed ftrt.pc, found {pcs}')
    pcdir = os.path.dirname(pcs[0])
    libdir = os.path.dirname(pcdir)
    env = dict(os.environ, PKG_CONFIG_PATH=pcdir, PKG_CONFIG_SYSROOT_DIR=dest,
               LD_LIBRARY_PATH=libdir)
    cc = os.environ.get('CC', 'cc')
    expect = {'ftrt': 'ftrt free-threaded: counter=400000',
              'ftrt-gil': 'ftrt-gil GIL: counter=400000'}
    for module, want in expect.items():
        flags = run(['pkg-config', '--cflags', '--libs', module], env=env).split()
        exe = os.path.join(dest, 'counter-' + module)
        run([cc, '-std=c11', '-Wall', '-Werror', '-o', exe,
             os.path.join(source, 'examples', 'counter.c')] + flags, env=env)
        out = run([exe], env=env).strip()
        print(f'{module}: {out}')
        if out != want:
            failures.append(f'{module}: printed {out!r}, expected {want!r}')

    # malloc_conf: the options of jemalloc's heap (sync/pymem_raw.c)
    allowed = re.compile(r'^(Py|_Py|PY)\w*$|^ft_\w+_slow$|^malloc_conf$')
    for lib in ('libftrt.so', 'libftrt-gil.so'):
        path = os.path.join(libdir, lib)
        syms = run(['nm', '-D', '--defined-only', path]).split('\n')
        names = [l.split()[-1] for l in syms if l.strip() and l.split()[1] in 'TDBRWV']
        leaked = [n for n in names if not allowed.match(n)]
        print(f'{lib}: {len(names)} exported symbols')
        if leaked:
            failures.append(f'{lib} exports internal symbols: {leaked}')
        if 'PyMutex_Lock' not in names:
            failures.append(f'{lib} does not export PyMutex_Lock')

    exes = glob.glob(os.path.join(dest, '**', 'bin', '*'), recursive=True)
    exes += glob.glob(os.path.join(dest, '**', 'libexec', 'ftrt', '*'), recursive=True)
    linked = 0
    for exe in exes:
        dyn = run(['readelf', '-d', exe])
        m = re.search(r'\((?:RUNPATH|RPATH)\).*\[(.*)\]', dyn)
        print(f'{os.path.basename(exe)}: rpath {m.group(1) if m else None}')
        if re.search(r'\(NEEDED\).*\[libftrt', dyn):
            linked += 1
            installed_libdir = '/' + os.path.relpath(libdir, dest)
            if not m or m.group(1) != installed_libdir:
                failures.append(f'{exe} links libftrt but its rpath is not the installed libdir')
    if linked < 2:
        failures.append(f'expected the two bench workers to link libftrt, found {linked}')

    # the installed driver runs the installed workers against the installed libraries
    bench = [e for e in exes if os.path.basename(e) == 'ftrt-bench']
    workers = [os.path.dirname(e) for e in exes if 'ftrt-bench-worker' in e]
    data = {os.path.basename(p): p
            for p in glob.glob(os.path.join(dest, '**', 'share', 'ftrt', '*.tsv'), recursive=True)}
    if set(data) != {'anchors.tsv', 'targets.tsv'}:
        failures.append(f'expected anchors.tsv and targets.tsv in share/ftrt, found {data}')
    if len(bench) == 1 and workers:
        r = subprocess.run([bench[0], '--smoke'], capture_output=True, text=True,
                           env=dict(env, FTRT_BENCH_WORKER_DIR=workers[0]))
        print('installed ftrt-bench --smoke:', r.stdout.strip().splitlines()[-1:] or r.stderr[-300:])
        if r.returncode != 0:
            failures.append(f'installed ftrt-bench --smoke failed ({r.returncode}): {r.stderr[-500:]}')
        ref = [l for l in r.stdout.splitlines() if l.startswith('reference data: ')]
        print('installed ftrt-bench', ref[0] if ref else 'printed no reference data line')
        for name, path in data.items():
            # the file the installed driver read is the installed one
            if not ref or os.path.realpath(path) not in [
                    os.path.realpath(w) for w in ref[0][16:].replace(',', ' ').split()]:
                failures.append(f'the installed ftrt-bench did not read the installed {name}: {ref}')
    else:
        failures.append(f'ftrt-bench or its workers were not installed: {exes}')

for f in failures:
    print('FAIL:', f)
sys.exit(1 if failures else 0)

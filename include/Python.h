/* ftrt: CPython's "Initialization, Finalization, and Threads" C API on a
 * free-threaded runtime.  The umbrella header, as in CPython:
 *
 *     #include <Python.h>      // cc $(pkg-config --cflags ftrt) ...
 *
 * pyconfig.h decides the build: Py_GIL_DISABLED is defined for libftrt and
 * not for libftrt-gil.
 */
#ifndef Py_PYTHON_H
#define Py_PYTHON_H

#include <pyconfig.h>   /* angle brackets: the variant's -I directory wins */

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "pyport.h"
#include "pymem.h"
#include "lock.h"
#include "object.h"
#include "objimpl.h"
#include "pyerrors.h"
#include "longobject.h"
#include "boolobject.h"
#include "floatobject.h"
#include "unicodeobject.h"
#include "tupleobject.h"
#include "listobject.h"
#include "dictobject.h"
#include "abstract.h"
#include "critical_section.h"
#include "pythread.h"
#include "pystate.h"
#include "ceval.h"
#include "pylifecycle.h"

#endif /* Py_PYTHON_H */

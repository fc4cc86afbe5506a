#ifndef Py_LOCK_H
#define Py_LOCK_H

#define Py_CPYTHON_LOCK_H_ALLOWED 1
#include "cpython/lock.h"
#undef Py_CPYTHON_LOCK_H_ALLOWED

#endif /* Py_LOCK_H */

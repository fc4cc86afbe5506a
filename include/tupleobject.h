/* (being written for the containers issue, #5) */
#ifndef PY_TUPLEOBJECT_H
#define PY_TUPLEOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

#endif /* PY_TUPLEOBJECT_H */

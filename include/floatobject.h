/* (being written for the containers issue, #5) */
#ifndef PY_FLOATOBJECT_H
#define PY_FLOATOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

#endif /* PY_FLOATOBJECT_H */

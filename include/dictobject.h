/* (being written for the containers issue, #5) */
#ifndef PY_DICTOBJECT_H
#define PY_DICTOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

#endif /* PY_DICTOBJECT_H */

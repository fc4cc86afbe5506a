/* (being written for the containers issue, #5) */
#ifndef PY_LISTOBJECT_H
#define PY_LISTOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

#endif /* PY_LISTOBJECT_H */

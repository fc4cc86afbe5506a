/* (being written for the containers issue, #5) */
#ifndef PY_LONGOBJECT_H
#define PY_LONGOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

#endif /* PY_LONGOBJECT_H */

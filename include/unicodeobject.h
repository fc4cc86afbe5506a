/* (being written for the containers issue, #5) */
#ifndef PY_UNICODEOBJECT_H
#define PY_UNICODEOBJECT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

#endif /* PY_UNICODEOBJECT_H */
